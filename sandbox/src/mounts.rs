//! Host mounts under a sandbox's shared directory (container rootfs, volumes), and the
//! cleanup that takes them down before anything under it is deleted.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("bind mount of {src} on {dst}: {source}")]
    Bind { src: PathBuf, dst: PathBuf, source: nix::Error },
    #[error("{0} is still mounted; refusing to delete under it")]
    StillMounted(PathBuf),
}

/// Mount points at or under `dir`, deepest first (mountinfo field 5, octal escapes decoded).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Binds `src` onto `dst` (created), read-only when asked; never propagating back.
fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MountError {
    let path = path.to_path_buf();
    move |source| MountError::Io { what, path, source }
}

pub fn bind(src: &Path, dst: &Path, readonly: bool) -> Result<(), MountError> {
    let meta = std::fs::metadata(src).map_err(io("cannot use", src))?;
    if meta.is_dir() {
        std::fs::create_dir_all(dst).map_err(io("mkdir", dst))?;
    } else {
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(io("mkdir", p))?;
        }
        std::fs::File::create(dst).map_err(io("create", dst))?;
    }
    let be = |source| MountError::Bind { src: src.into(), dst: dst.into(), source };
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(be)?;
    // Private first, so nothing mounted later under either side leaks across.
    mount(None::<&str>, dst, None::<&str>, MsFlags::MS_PRIVATE | MsFlags::MS_REC, None::<&str>).map_err(be)?;
    if readonly {
        let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
        if let Err(e) = mount(None::<&str>, dst, None::<&str>, ro, None::<&str>) {
            let _ = umount2(dst, MntFlags::MNT_DETACH);
            return Err(be(e));
        }
    }
    Ok(())
}

/// Unmounts everything under `dir` (lazily), then removes the directory tree — only if
/// no mount is left, so a bound host directory can never be deleted through it.
pub fn unmount_and_remove(dir: &Path) -> Result<(), MountError> {
    for m in mounts_under(dir) {
        let _ = umount2(&m, MntFlags::MNT_DETACH);
    }
    if let Some(m) = mounts_under(dir).into_iter().next() {
        return Err(MountError::StillMounted(m));
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MountError::Io { what: "remove", path: dir.into(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/run/a\040b"), "/run/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
    }

    /// As root: a read-only bind under a sandbox dir is unmounted by cleanup and the
    /// source directory survives untouched.
    #[test]
    fn cleanup_unmounts_binds_and_never_deletes_their_source() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (does not skip)");
        let src = tempfile::tempdir().expect("src");
        std::fs::write(src.path().join("precious"), "keep me").expect("write");
        let sb = tempfile::tempdir().expect("sandbox dir");
        let dst = sb.path().join("shared/c1/rootfs");
        bind(src.path(), &dst, true).expect("bind");
        assert_eq!(std::fs::read_to_string(dst.join("precious")).expect("through the bind"), "keep me");
        assert!(std::fs::write(dst.join("new"), "x").is_err(), "read-only");
        assert_eq!(mounts_under(sb.path()), vec![dst.clone()]);
        unmount_and_remove(sb.path()).expect("cleanup");
        assert!(!sb.path().exists());
        assert_eq!(std::fs::read_to_string(src.path().join("precious")).expect("source kept"), "keep me");
    }
}
