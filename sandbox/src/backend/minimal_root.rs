//! A root of its own for a third-party helper (vhost-device-vsock): a mount namespace
//! whose `/` is an empty read-only tmpfs holding only the shared libraries a
//! dynamically linked program needs (read-only binds of the host's `/usr/lib` and
//! `/usr/lib64`, the `/lib` and `/lib64` links, `/etc/ld.so.cache`), the directories
//! it serves (read-write binds, nosuid, nodev, noexec) and a `/proc` showing only its
//! own processes (`hidepid=invisible,subset=pid`). The host's tree is detached. Set up
//! between fork and exec while still root (before the drop to the sandbox's uid and
//! the filter, which refuses mount calls), from steps prepared before the fork.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the dynamic loader and libc need of the host, read-only.
const SYSTEM: &[&str] = &["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache"];

#[derive(Debug)]
enum Step {
    Mkdir(CString),
    Symlink { target: CString, at: CString },
    Bind { from: CString, at: CString, file: bool, writable: bool },
}

fn c(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::other(format!("{} holds a NUL", p.display())))
}

/// The steps that build the root in `stage` (a directory root alone may write), with
/// `writable` bound read-write at their own paths.
fn steps(stage: &Path, writable: &[PathBuf]) -> std::io::Result<Vec<Step>> {
    let mut out = Vec::new();
    let mut made: Vec<PathBuf> = Vec::new();
    let inside = |p: &Path| stage.join(p.strip_prefix("/").unwrap_or(p));
    let mut parents = |out: &mut Vec<Step>, p: &Path| -> std::io::Result<()> {
        let mut dirs: Vec<&Path> = p.ancestors().skip(1).take_while(|a| *a != Path::new("/")).collect();
        dirs.reverse();
        for d in dirs {
            if !made.iter().any(|m| m == d) {
                made.push(d.to_path_buf());
                out.push(Step::Mkdir(c(&inside(d))?));
            }
        }
        Ok(())
    };
    for s in SYSTEM {
        let p = Path::new(s);
        let Ok(meta) = p.symlink_metadata() else { continue };
        parents(&mut out, p)?;
        if meta.file_type().is_symlink() {
            out.push(Step::Symlink { target: c(&std::fs::read_link(p)?)?, at: c(&inside(p))? });
        } else {
            out.push(Step::Bind { from: c(p)?, at: c(&inside(p))?, file: meta.is_file(), writable: false });
        }
    }
    for w in writable {
        if !w.is_absolute() || !w.is_dir() {
            return Err(std::io::Error::other(format!("{} is not an absolute directory", w.display())));
        }
        parents(&mut out, w)?;
        out.push(Step::Bind { from: c(w)?, at: c(&inside(w))?, file: false, writable: true });
    }
    out.push(Step::Mkdir(c(&stage.join("proc"))?));
    Ok(out)
}

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives `cmd` the minimal root described above, built in `stage` (made here if
/// missing), with `writable` bound read-write. Register it after the hooks that need
/// the host's tree (the cgroup join) and before the drop to an unprivileged user.
pub fn install(cmd: &mut Command, stage: &Path, writable: &[PathBuf]) -> std::io::Result<()> {
    std::fs::create_dir_all(stage)?;
    let steps = steps(stage, writable)?;
    let proc = c(&stage.join("proc"))?;
    let stage = c(stage)?;
    let (tmpfs, proc_fs, proc_opts, tmpfs_opts) =
        (c"tmpfs", c"proc", c"hidepid=invisible,subset=pid", c"mode=0755,size=64k");
    let (root, dot) = (c"/", c".");
    // SAFETY: the hook only makes raw syscalls (unshare, mount, mkdir, symlink, open,
    // close, chdir, pivot_root, umount2) on C strings built before the fork: no
    // allocation, no lock, async-signal-safe. Every pointer stays valid: the strings
    // are moved into the closure.
    unsafe {
        cmd.pre_exec(move || {
            let null: *const libc::c_char = std::ptr::null();
            let no_data: *const libc::c_void = std::ptr::null();
            check(libc::unshare(libc::CLONE_NEWNS))?;
            // Nothing of ours propagates back to the host's mounts.
            check(libc::mount(null, root.as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, no_data))?;
            check(libc::mount(
                tmpfs.as_ptr(),
                stage.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                tmpfs_opts.as_ptr().cast(),
            ))?;
            for s in &steps {
                match s {
                    Step::Mkdir(p) => check(libc::mkdir(p.as_ptr(), 0o755))?,
                    Step::Symlink { target, at } => check(libc::symlink(target.as_ptr(), at.as_ptr()))?,
                    Step::Bind { from, at, file, writable } => {
                        if *file {
                            let fd = libc::open(at.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                            check(fd)?;
                            libc::close(fd);
                        } else {
                            check(libc::mkdir(at.as_ptr(), 0o755))?;
                        }
                        check(libc::mount(from.as_ptr(), at.as_ptr(), null, libc::MS_BIND | libc::MS_REC, no_data))?;
                        let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
                        flags |= if *writable { libc::MS_NOEXEC } else { libc::MS_RDONLY };
                        check(libc::mount(null, at.as_ptr(), null, flags, no_data))?;
                    }
                }
            }
            check(libc::mount(
                proc_fs.as_ptr(),
                proc.as_ptr(),
                proc_fs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                proc_opts.as_ptr().cast(),
            ))?;
            // pivot_root(".", "."): the old root stacks under the new one and goes.
            check(libc::chdir(stage.as_ptr()))?;
            check(libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int)?;
            check(libc::umount2(dot.as_ptr(), libc::MNT_DETACH))?;
            check(libc::chdir(root.as_ptr()))?;
            check(libc::mount(
                null,
                root.as_ptr(),
                null,
                libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                no_data,
            ))
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::unprivileged::{drop_to, Program};

    /// As the sandbox's uid inside its root, tried as a helper taken over would: the
    /// host's files are not there, the root is read-only, the served directory is
    /// writable, and a dynamically linked program still runs.
    #[test]
    fn a_helper_sees_its_libraries_and_its_directory_only() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (does not skip)");
        let d = tempfile::tempdir().expect("tmp");
        let served = d.path().join("served");
        std::fs::create_dir(&served).expect("served");
        std::os::unix::fs::chown(&served, Some(65534), Some(65534)).expect("chown");
        let stage = d.path().join("stage");
        let sh = Program::open(Path::new("/bin/sh")).expect("sh");
        let run = |script: String| {
            let mut c = Command::new(sh.via_fd());
            c.args(["-c", &script]);
            install(&mut c, &stage, std::slice::from_ref(&served)).expect("root");
            drop_to(&mut c, 65534, 65534);
            c.output().expect("sh")
        };
        // The shell's own builtins only: no /bin in there.
        let s = served.display();
        let out = run(format!(
            "for f in /etc/passwd /root /bin /usr/bin /var /run/isola; do [ -e $f ] && echo \"there: $f\"; done; \
             echo x > /new 2>/dev/null && echo 'wrote the root'; echo hi > {s}/f && echo wrote-served; \
             for p in /proc/[0-9]*; do echo \"proc: $p\"; done"
        ));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("there:") && !text.contains("wrote the root"), "{text}");
        assert!(text.contains("wrote-served"), "{text}");
        assert_eq!(std::fs::read_to_string(served.join("f")).expect("f"), "hi\n");
        assert_eq!(text.lines().filter(|l| l.starts_with("proc: ")).count(), 1, "only itself in /proc: {text}");
        // Control: the same shell without the root sees the host.
        let mut c = Command::new(sh.via_fd());
        c.args(["-c", "[ -e /etc/passwd ]"]);
        assert!(c.status().expect("sh").success());
    }
}
