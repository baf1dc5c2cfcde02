//! `isola cp`: files and directories between the host and a sandbox's container, in
//! either direction, as `docker cp` copies them. The container side runs its own
//! `tar` (busybox has one), so nothing in the guest parses host input and the
//! container's tar reaches the host only through `isola_image::extract`, which takes
//! files, directories and symlinks alone, never through a symlink, within a budget.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use isola_sandbox::spec::{self, ContainerOptions};
use isola_sandbox::state::SandboxState;
use isola_sandbox::Streams;

use crate::manage_cmd::find;

/// The most a copy out of a container may unpack (ISOLA_MAX_CP_BYTES overrides).
const MAX_BYTES: u64 = 4 << 30;

#[derive(Args, Debug)]
pub struct CpArgs {
    /// NAME:PATH or a host path.
    src: String,
    /// NAME:PATH or a host path (one side must be a sandbox).
    dst: String,
}

/// `NAME:/path` (an absolute path in the container), else a host path.
fn in_sandbox(s: &str) -> Option<(&str, &str)> {
    let (name, path) = s.split_once(':')?;
    (!name.is_empty() && !name.contains('/') && path.starts_with('/')).then_some((name, path))
}

/// The parent and the last component of a container path (`/a/b` → `/a`, `b`).
fn split(path: &str) -> anyhow::Result<(String, String)> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = trimmed.rsplit_once('/').with_context(|| format!("{path}: not a path to copy"))?;
    anyhow::ensure!(!name.is_empty() && name != "." && name != "..", "{path}: name a file or a directory");
    Ok((if parent.is_empty() { "/".into() } else { parent.into() }, name.into()))
}

/// Runs `args` in the sandbox's container; `feed` writes its stdin, `drain` reads its
/// stdout. Fails with the command's stderr when it exits non-zero.
fn run_in(
    st: &SandboxState,
    name: &str,
    args: Vec<String>,
    feed: impl FnOnce(&mut dyn Write) -> anyhow::Result<()> + Send + 'static,
    drain: impl FnOnce(&mut dyn Read) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let id = crate::manage_cmd::container_id(name, st)?;
    let c = st.container(&id, Duration::from_secs(30));
    let process = spec::process(&ContainerOptions { args, ..Default::default() })?;
    let p = c.exec(&format!("cp-{}", std::process::id()), process)?;
    let Streams::Pipes { mut stdout, mut stderr, mut stdin } = p.attach(false)? else {
        anyhow::bail!("the copy got a terminal instead of pipes");
    };
    p.start()?;
    let writer = std::thread::spawn(move || {
        let r = feed(&mut stdin);
        let _ = stdin.shutdown(std::net::Shutdown::Both);
        r
    });
    let errors = std::thread::spawn(move || {
        let mut e = Vec::new();
        let _ = (&mut stderr).take(64 << 10).read_to_end(&mut e);
        String::from_utf8_lossy(&e).trim().to_string()
    });
    let drained = drain(&mut stdout);
    // Whatever the host side thought, the guest side's exit says what happened.
    let status = p.wait()?;
    let fed = writer.join().map_err(|_| anyhow::anyhow!("the copy's writer failed"))?;
    let err = errors.join().unwrap_or_default();
    anyhow::ensure!(status.code == 0, "in {name}: {} exited {}: {err}", "tar", status.code);
    drained?;
    fed
}

/// Out of the container: its tar of PATH, unpacked on the host as DST (into DST when
/// that is a directory).
fn copy_out(name: &str, path: &str, dst: &Path) -> anyhow::Result<()> {
    let (_, st) = find(name)?;
    let (parent, base) = split(path)?;
    let budget = std::env::var("ISOLA_MAX_CP_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(MAX_BYTES);
    let into_dir = std::fs::symlink_metadata(dst).map(|m| m.is_dir()).unwrap_or(false);
    // Unpacked beside DST first, so a failed copy leaves nothing half-written.
    let at = if into_dir {
        dst.to_path_buf()
    } else {
        dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf()
    };
    let tmp = tempfile::Builder::new()
        .prefix(".isola-cp-")
        .tempdir_in(&at)
        .with_context(|| format!("a temporary directory in {}", at.display()))?;
    let args = vec!["tar".into(), "-c".into(), "-f".into(), "-".into(), "-C".into(), parent, base.clone()];
    run_in(
        &st,
        name,
        args,
        |_| Ok(()),
        |out| {
            isola_image::extract::extract_untrusted(out, tmp.path(), budget).map_err(|e| anyhow::anyhow!("{path}: {e}"))
        },
    )?;
    let got = tmp.path().join(&base);
    let target = if into_dir { dst.join(&base) } else { dst.to_path_buf() };
    if let Ok(m) = std::fs::symlink_metadata(&target) {
        anyhow::ensure!(
            !m.is_dir() || !got.is_dir() || std::fs::read_dir(&target)?.next().is_none(),
            "{} exists and is not empty",
            target.display()
        );
        if m.is_dir() {
            std::fs::remove_dir(&target)?
        } else {
            std::fs::remove_file(&target)?
        }
    }
    std::fs::rename(&got, &target).with_context(|| format!("moving the copy to {}", target.display()))
}

/// Into the container: a tar of SRC (symlinks as links, never followed) unpacked by the
/// container's tar at PATH (into PATH when that is a directory there).
fn copy_in(src: &Path, name: &str, path: &str) -> anyhow::Result<()> {
    let (_, st) = find(name)?;
    let meta = std::fs::symlink_metadata(src).with_context(|| format!("{}", src.display()))?;
    let base =
        src.file_name().with_context(|| format!("{}: name a file or a directory", src.display()))?.to_os_string();
    let src: PathBuf = src.into();
    // Into PATH if it is a directory; else PATH is the new name (unpacked beside it).
    let script = r#"d=$1; n=$2
if [ -d "$d" ]; then exec tar -x -f - -C "$d"; fi
t=$(dirname "$d")/.isola-cp-$$
mkdir "$t" && tar -x -f - -C "$t" && mv "$t/$n" "$d" && rmdir "$t""#;
    let args = vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        "isola-cp".into(),
        path.into(),
        base.to_string_lossy().into_owned(),
    ];
    run_in(
        &st,
        name,
        args,
        move |stdin| {
            let mut b = tar::Builder::new(stdin);
            b.follow_symlinks(false);
            if meta.is_dir() {
                b.append_dir_all(&base, &src)?
            } else {
                b.append_path_with_name(&src, &base)?
            }
            b.finish()?;
            Ok(())
        },
        |out| {
            std::io::copy(out, &mut std::io::sink())?;
            Ok(())
        },
    )
}

pub fn cp(a: CpArgs) -> anyhow::Result<ExitCode> {
    match (in_sandbox(&a.src), in_sandbox(&a.dst)) {
        (Some((name, path)), None) => copy_out(name, path, Path::new(&a.dst))?,
        (None, Some((name, path))) => copy_in(Path::new(&a.src), name, path)?,
        (Some(_), Some(_)) => anyhow::bail!("copying between two sandboxes is not supported: copy through the host"),
        (None, None) => anyhow::bail!("one side must be NAME:/PATH in a sandbox"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_and_paths_are_told_apart() {
        assert_eq!(in_sandbox("web:/etc/hosts"), Some(("web", "/etc/hosts")));
        assert_eq!(in_sandbox("./web:/x"), None, "a host path with a colon");
        assert_eq!(in_sandbox("web:rel"), None, "container paths are absolute");
        assert_eq!(in_sandbox("/tmp/a"), None);
        assert_eq!(split("/etc/hosts").expect("file"), ("/etc".into(), "hosts".into()));
        assert_eq!(split("/srv/").expect("dir"), ("/".into(), "srv".into()));
        assert!(split("/").is_err() && split("/a/..").is_err());
    }
}
