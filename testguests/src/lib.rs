//! The freestanding test guests in `testguests/guests/`: building them (assembly or C) with the
//! system compiler and linker. Used by the integration tests and by `isola bench` to boot the same
//! tiny guest under every backend.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A test guest: its name, source file, and preprocessor defines.
#[derive(Clone, Copy, Debug)]
pub struct GuestSpec {
    pub name: &'static str,
    pub source: &'static str,
    pub defines: &'static [&'static str],
    /// More sources linked into this guest only (lib.S goes into every one).
    pub extra: &'static [&'static str],
}

/// Every test guest we ship.
pub const GUESTS: &[GuestSpec] = &[
    GuestSpec { name: "boot_check", source: "boot_check.S", defines: &[], extra: &[] },
    GuestSpec { name: "boot_check_pvh", source: "boot_check.S", defines: &["-DPVH"], extra: &[] },
    GuestSpec { name: "triple_fault", source: "triple_fault.S", defines: &[], extra: &[] },
    GuestSpec { name: "runaway", source: "runaway.S", defines: &[], extra: &[] },
    GuestSpec { name: "vsock_echo", source: "vsock_echo.c", defines: &[], extra: &[] },
    GuestSpec { name: "idle", source: "boot_check.S", defines: &["-DPVH", "-DIDLE"], extra: &["idle.S"] },
    GuestSpec { name: "net_arp", source: "net_arp.c", defines: &[], extra: &[] },
    GuestSpec { name: "counter", source: "counter.c", defines: &[], extra: &[] },
    GuestSpec { name: "ticker", source: "ticker.c", defines: &[], extra: &[] },
];

/// Freestanding C: no libc, no red zone, no SSE, absolute addresses (loaded at 1 MiB).
const C_FLAGS: &[&str] = &[
    "-O2",
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-mno-red-zone",
    "-mgeneral-regs-only",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fcf-protection=none",
    "-fno-builtin",
];

#[derive(Debug, thiserror::Error)]
pub enum TestGuestError {
    #[error("no test guest named {0}")]
    Unknown(String),
    #[error("cannot run {tool}: {source} (install binutils and gcc)")]
    Spawn { tool: &'static str, source: std::io::Error },
    #[error("{tool} failed building {guest}: {stderr}")]
    Tool { tool: &'static str, guest: String, stderr: String },
    #[error("cannot create {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The guest sources, compiled in: a binary built in one checkout (or a build cache
/// shared by several) builds its guests from what it was compiled with, never from a
/// path that a moved or removed checkout no longer has.
const SOURCES: &[(&str, &str)] = &[
    ("boot_check.S", include_str!("../guests/boot_check.S")),
    ("counter.c", include_str!("../guests/counter.c")),
    ("guest.ld", include_str!("../guests/guest.ld")),
    ("idle.S", include_str!("../guests/idle.S")),
    ("lib.S", include_str!("../guests/lib.S")),
    ("net_arp.c", include_str!("../guests/net_arp.c")),
    ("runaway.S", include_str!("../guests/runaway.S")),
    ("ticker.c", include_str!("../guests/ticker.c")),
    ("triple_fault.S", include_str!("../guests/triple_fault.S")),
    ("virtio.h", include_str!("../guests/virtio.h")),
    ("vsock_echo.c", include_str!("../guests/vsock_echo.c")),
];

/// Writes the guest sources into `dir/src` and returns that directory.
fn write_sources(dir: &Path) -> Result<PathBuf, TestGuestError> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(|source| TestGuestError::Io { path: src.display().to_string(), source })?;
    for (name, text) in SOURCES {
        let p = src.join(name);
        std::fs::write(&p, text).map_err(|source| TestGuestError::Io { path: p.display().to_string(), source })?;
    }
    Ok(src)
}

fn run(tool: &'static str, guest: &str, args: &[&std::ffi::OsStr]) -> Result<(), TestGuestError> {
    let out = Command::new(tool).args(args).output().map_err(|source| TestGuestError::Spawn { tool, source })?;
    if !out.status.success() {
        return Err(TestGuestError::Tool {
            tool,
            guest: guest.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Assembles and links guest `name` into `out_dir/<name>.elf`.
///
/// Tests running in parallel build the same guest into the same directory while others boot it,
/// so each build works in its own scratch directory and the finished ELF is renamed into place:
/// a reader sees the old file or the new one, never one that `ld` is still writing.
pub fn build(name: &str, out_dir: &Path) -> Result<PathBuf, TestGuestError> {
    let spec = GUESTS.iter().find(|g| g.name == name).ok_or_else(|| TestGuestError::Unknown(name.to_string()))?;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| TestGuestError::Io { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let scratch = tempfile::Builder::new().prefix(&format!(".{name}-")).tempdir_in(out_dir).map_err(io(out_dir))?;
    let elf = out_dir.join(format!("{name}.elf"));
    let built = link_in(spec, scratch.path())?;
    std::fs::rename(&built, &elf).map_err(io(&elf))?;
    Ok(elf)
}

/// Compiles and links `spec` inside `out_dir`, returning the ELF's path there.
fn link_in(spec: &GuestSpec, out_dir: &Path) -> Result<PathBuf, TestGuestError> {
    let name = spec.name;
    let src = write_sources(out_dir)?;
    let lib_obj = out_dir.join(format!("{name}.lib.o"));
    let obj = out_dir.join(format!("{name}.o"));
    let elf = out_dir.join(format!("{name}.elf"));
    run("gcc", name, &["-c".as_ref(), "-o".as_ref(), lib_obj.as_os_str(), src.join("lib.S").as_os_str()])?;
    let mut extra_objs = Vec::new();
    for (i, extra) in spec.extra.iter().enumerate() {
        let o = out_dir.join(format!("{name}.extra{i}.o"));
        run("gcc", name, &["-c".as_ref(), "-o".as_ref(), o.as_os_str(), src.join(extra).as_os_str()])?;
        extra_objs.push(o);
    }
    let mut args: Vec<&std::ffi::OsStr> = spec.defines.iter().map(|d| d.as_ref()).collect();
    if spec.source.ends_with(".c") {
        args.extend(C_FLAGS.iter().map(|f| -> &std::ffi::OsStr { f.as_ref() }));
    }
    let main_src = src.join(spec.source);
    args.extend(["-c".as_ref(), "-o".as_ref(), obj.as_os_str(), main_src.as_os_str()]);
    run("gcc", name, &args)?;
    let script = src.join("guest.ld");
    let mut link: Vec<&std::ffi::OsStr> = vec![
        "-T".as_ref(),
        script.as_os_str(),
        "-nostdlib".as_ref(),
        "--no-warn-rwx-segments".as_ref(),
        "-o".as_ref(),
        elf.as_os_str(),
        obj.as_os_str(),
        lib_obj.as_os_str(),
    ];
    link.extend(extra_objs.iter().map(|o| o.as_os_str()));
    run("ld", name, &link)?;
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_guest_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = build("nope", dir.path()).expect_err("unknown");
        assert_eq!(e.to_string(), "no test guest named nope");
    }

    #[test]
    fn every_guest_builds_into_an_elf() {
        let dir = tempfile::tempdir().expect("tmp");
        for g in GUESTS {
            let p = build(g.name, dir.path()).unwrap_or_else(|e| panic!("{e}"));
            let bytes = std::fs::read(&p).expect("read elf");
            assert_eq!(&bytes[..4], b"\x7fELF", "{}", g.name);
        }
    }
}

#[cfg(test)]
mod sources_tests {
    /// Every file under `guests/` is compiled in (a new one left out would build
    /// nowhere but in this checkout).
    #[test]
    fn every_guest_source_is_compiled_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guests");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("guests dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut compiled: Vec<String> = super::SOURCES.iter().map(|(n, _)| n.to_string()).collect();
        compiled.sort();
        assert_eq!(compiled, on_disk);
    }
}
