//! Paths inside a directory the guest can write (the share): every component is
//! resolved beneath it without following a symlink (`openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and mount points are created without
//! truncating or replacing anything. A guest that plants a symlink gets an error, never
//! a mount or a file outside the share (the class of runc's CVE-2021-30465).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("{path} is not inside {root}")]
    Outside { root: PathBuf, path: PathBuf },
    #[error("{what} {path} (beneath {root}, symlinks not followed): {source}")]
    Io { what: &'static str, root: PathBuf, path: PathBuf, source: std::io::Error },
}

/// What the last component of a mount point is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

fn cstr(p: &Path) -> CString {
    // A path component from `Path::components` holds no NUL.
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

const RESOLVE: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;

fn openat2(dir: &OwnedFd, name: &Path, flags: libc::c_int, mode: u32) -> std::io::Result<OwnedFd> {
    let name = cstr(name);
    // SAFETY: open_how is plain data; zeroed then filled field by field.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = u64::from(mode);
    how.resolve = RESOLVE;
    // SAFETY: `dir` is an open descriptor, `name` a NUL-terminated string and `how` a
    // valid open_how of the size we pass; the kernel writes nothing back.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, dir.as_raw_fd(), name.as_ptr(), &how, std::mem::size_of::<libc::open_how>())
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

fn mkdirat(dir: &OwnedFd, name: &Path) -> std::io::Result<()> {
    let name = cstr(name);
    // SAFETY: `dir` is open and `name` NUL-terminated; mkdirat never follows a symlink
    // in its last component (an existing one is EEXIST, then refused by openat2).
    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) } == 0 {
        return Ok(());
    }
    match std::io::Error::last_os_error() {
        e if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        e => Err(e),
    }
}

/// Opens `path` (inside `root`) as a mount point of `kind`, creating it and its
/// parents (and `root`) when missing: directories 0755, a file empty 0644 (an existing file is
/// neither truncated nor replaced). Fails on any symlink or `..` on the way.
pub fn mount_point(root: &Path, path: &Path, kind: Kind) -> Result<OwnedFd, BeneathError> {
    let rel = path.strip_prefix(root).map_err(|_| BeneathError::Outside { root: root.into(), path: path.into() })?;
    let err =
        |what: &'static str| move |source| BeneathError::Io { what, root: root.into(), path: path.into(), source };
    let names: Vec<&Path> = rel
        .components()
        .map(|c| match c {
            Component::Normal(n) => Ok(Path::new(n)),
            _ => Err(BeneathError::Outside { root: root.into(), path: path.into() }),
        })
        .collect::<Result<_, _>>()?;
    // The root is ours (a sandbox's share), not the guest's: made when missing.
    std::fs::create_dir_all(root).map_err(err("mkdir"))?;
    let root_c = cstr(root);
    // SAFETY: `root_c` is NUL-terminated; O_NOFOLLOW refuses a symlinked root.
    let fd =
        unsafe { libc::open(root_c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(err("open")(std::io::Error::last_os_error()));
    }
    // SAFETY: a new descriptor that nothing else owns.
    let mut cur = unsafe { OwnedFd::from_raw_fd(fd) };
    let Some((last, parents)) = names.split_last() else { return Ok(cur) };
    for name in parents {
        mkdirat(&cur, name).map_err(err("mkdir"))?;
        cur = openat2(&cur, name, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(err("open"))?;
    }
    match kind {
        Kind::Dir => {
            mkdirat(&cur, last).map_err(err("mkdir"))?;
            openat2(&cur, last, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(err("open"))
        }
        Kind::File => {
            openat2(&cur, last, libc::O_CREAT | libc::O_RDONLY | libc::O_NOCTTY, 0o644).map_err(err("create"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_created_beneath_and_symlinks_are_refused() {
        let root = tempfile::tempdir().expect("root");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("victim"), "keep").expect("victim");
        let r = root.path();
        mount_point(r, &r.join("c1/volumes/0"), Kind::Dir).expect("dirs made");
        assert!(r.join("c1/volumes/0").is_dir());
        std::fs::write(r.join("c1/file"), "data").expect("file");
        mount_point(r, &r.join("c1/file"), Kind::File).expect("an existing file is used");
        assert_eq!(std::fs::read_to_string(r.join("c1/file")).expect("read"), "data", "not truncated");
        // Symlinks planted by a guest: absolute, relative `..`, and a symlinked parent.
        std::os::unix::fs::symlink(outside.path().join("victim"), r.join("c1/abs")).expect("link");
        std::os::unix::fs::symlink("../../..", r.join("c1/rel")).expect("link");
        std::os::unix::fs::symlink(outside.path(), r.join("c1/parent")).expect("link");
        for (p, kind) in [
            ("c1/abs", Kind::File),
            ("c1/rel", Kind::Dir),
            ("c1/parent/victim", Kind::File),
            ("c1/parent/new", Kind::Dir),
        ] {
            assert!(mount_point(r, &r.join(p), kind).is_err(), "{p} must be refused");
        }
        assert!(mount_point(r, &r.join("c1/../../x"), Kind::Dir).is_err(), "`..` refused");
        assert!(mount_point(r, Path::new("/etc"), Kind::Dir).is_err(), "outside refused");
        assert_eq!(std::fs::read_to_string(outside.path().join("victim")).expect("victim"), "keep");
        assert_eq!(std::fs::read_dir(outside.path()).expect("ls").count(), 1, "nothing created outside");
    }
}
