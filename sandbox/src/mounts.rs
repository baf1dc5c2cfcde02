//! Host mounts under a sandbox's shared directory (container rootfs, volumes), and the
//! cleanup that takes them down before anything under it is deleted.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::beneath::{BeneathError, Kind};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("bind mount of {src} on {dst}: {source}")]
    Bind { src: PathBuf, dst: PathBuf, source: nix::Error },
    #[error(transparent)]
    Beneath(#[from] BeneathError),
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

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MountError {
    let path = path.to_path_buf();
    move |source| MountError::Io { what, path, source }
}

fn last_err(src: &Path, dst: &Path) -> MountError {
    MountError::Bind { src: src.into(), dst: dst.into(), source: nix::Error::last() }
}

/// Binds `src` (and what is mounted under it) onto `share/rel`, which is created beneath
/// the guest-writable `share` without following symlinks ([`crate::beneath`]).
///
/// The bind is whole before it appears: a detached copy of `src` gets nosuid, nodev
/// and, when asked, read-only on every mount in it (recursive: a submount of a `:ro`
/// volume is read-only too), then is moved into place. The share propagates to
/// virtiofsd's own mount namespace, where a bind remounted read-only only afterwards
/// would stay writable. The copy is private: nothing mounted later under `src` leaks
/// into the guest's view.
pub fn bind(src: &Path, share: &Path, rel: &Path, readonly: bool) -> Result<(), MountError> {
    bind_with(src, share, rel, readonly, Propagation::Private)
}

/// Whether mounts made on the host under a bind's source later reach the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Nothing propagates (the default, `rprivate`).
    Private,
    /// Host → guest (`rslave`, and `rshared`, whose other direction a VM cannot give):
    /// the bind is a slave of its source's peer group, and shared on, so virtiofsd's
    /// copy of the share receives what the host mounts there. Needs a shared source.
    FromHost,
}

impl Propagation {
    /// From OCI mount options.
    pub fn from_options(options: &[String]) -> Self {
        let from_host = options.iter().any(|o| matches!(o.as_str(), "rslave" | "slave" | "rshared" | "shared"));
        if from_host {
            Self::FromHost
        } else {
            Self::Private
        }
    }
}

/// mount_setattr(2) of `attr_set` and `propagation` on the whole tree behind `tree`.
fn set_attr(tree: &OwnedFd, attr_set: u64, propagation: u64, src: &Path, dst: &Path) -> Result<(), MountError> {
    let mut attr = libc::mount_attr { attr_set, attr_clr: 0, propagation, userns_fd: 0 };
    let empty = c"";
    // SAFETY: mount_setattr(2) on a mount we hold a descriptor of, with a mount_attr of the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &mut attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(last_err(src, dst));
    }
    Ok(())
}

/// [`bind`] with a propagation choice.
pub fn bind_with(src: &Path, share: &Path, rel: &Path, readonly: bool, prop: Propagation) -> Result<(), MountError> {
    let dst = share.join(rel);
    let meta = std::fs::metadata(src).map_err(io("cannot use", src))?;
    let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    let target = crate::beneath::mount_point(share, &dst, kind)?;
    let src_c = std::ffi::CString::new(src.as_os_str().as_bytes())
        .map_err(|_| io("cannot use", src)(std::io::ErrorKind::InvalidInput.into()))?;
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint;
    // SAFETY: open_tree(2) with a NUL-terminated path; it returns a new descriptor.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, src_c.as_ptr(), flags) };
    if tree < 0 {
        return Err(last_err(src, &dst));
    }
    // SAFETY: a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as libc::c_int) };
    let ro = if readonly { libc::MOUNT_ATTR_RDONLY } else { 0 };
    let propagation = match prop {
        Propagation::Private => libc::MS_PRIVATE,
        Propagation::FromHost => libc::MS_SLAVE,
    };
    // The detached copy: nosuid, nodev, read-only if asked, before it appears.
    set_attr(&tree, libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | ro, propagation, src, &dst)?;
    let empty = c"";
    let to = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: move_mount(2) between two descriptors we hold, with empty paths.
    let rc = unsafe {
        libc::syscall(libc::SYS_move_mount, tree.as_raw_fd(), empty.as_ptr(), target.as_raw_fd(), empty.as_ptr(), to)
    };
    if rc < 0 {
        return Err(last_err(src, &dst));
    }
    if prop == Propagation::FromHost {
        // Slave and shared: what the host mounts under the source reaches this bind,
        // and from it virtiofsd's copy (a copy propagates only from a shared mount).
        set_attr(&tree, 0, libc::MS_SHARED, src, &dst)?;
    }
    Ok(())
}

/// Makes `share` a mount of its own (nosuid, nodev) that propagates what is mounted
/// under it later (container rootfs, volumes) to the helpers that serve it from their
/// own mount namespace (virtiofsd's sandbox holds a slave copy).
pub fn prepare_share(share: &Path) -> Result<(), MountError> {
    let be = |source| MountError::Bind { src: share.into(), dst: share.into(), source };
    let nothing = None::<&str>;
    mount(Some(share), share, nothing, MsFlags::MS_BIND, nothing).map_err(be)?;
    let result = (|| {
        let f = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(nothing, share, nothing, f, nothing)?;
        // Its own peer group, not that of the filesystem it sits on.
        mount(nothing, share, nothing, MsFlags::MS_PRIVATE, nothing)?;
        mount(nothing, share, nothing, MsFlags::MS_SHARED, nothing)
    })();
    if let Err(e) = result {
        let _ = umount2(share, MntFlags::MNT_DETACH);
        return Err(be(e));
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
        let dst = sb.path().join("c1/rootfs");
        bind(src.path(), sb.path(), Path::new("c1/rootfs"), true).expect("bind");
        assert_eq!(std::fs::read_to_string(dst.join("precious")).expect("through the bind"), "keep me");
        assert!(std::fs::write(dst.join("new"), "x").is_err(), "read-only");
        assert_eq!(mounts_under(sb.path()), vec![dst.clone()]);
        unmount_and_remove(sb.path()).expect("cleanup");
        assert!(!sb.path().exists());
        assert_eq!(std::fs::read_to_string(src.path().join("precious")).expect("source kept"), "keep me");
    }

    /// As root: with host → guest propagation (`rslave`), what the host mounts under a
    /// shared source after the bind shows through it; a private bind does not see it.
    #[test]
    fn propagating_binds_see_later_host_mounts_and_private_ones_do_not() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (does not skip)");
        let src = tempfile::tempdir().expect("src");
        let s = src.path();
        mount(Some(s), s, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("self-bind");
        mount(None::<&str>, s, None::<&str>, MsFlags::MS_SHARED, None::<&str>).expect("shared");
        let share = tempfile::tempdir().expect("share");
        bind_with(s, share.path(), Path::new("a"), false, Propagation::FromHost).expect("rslave bind");
        bind_with(s, share.path(), Path::new("b"), false, Propagation::Private).expect("private bind");
        std::fs::create_dir(s.join("sub")).expect("sub");
        mount(Some("tmpfs"), &s.join("sub"), Some("tmpfs"), MsFlags::empty(), Some("size=1m")).expect("later mount");
        std::fs::write(s.join("sub/late"), "hi").expect("write");
        let seen = |b: &str| share.path().join(b).join("sub/late").exists();
        let (a, b) = (seen("a"), seen("b"));
        // Shared on, so a copy of the share (virtiofsd's) receives it too.
        let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let a_path = share.path().join("a").display().to_string();
        let a_line =
            info.lines().find(|l| l.split_whitespace().nth(4) == Some(a_path.as_str())).unwrap_or("").to_string();
        let _ = umount2(&s.join("sub"), MntFlags::MNT_DETACH);
        unmount_and_remove(share.path()).expect("cleanup");
        let _ = umount2(s, MntFlags::MNT_DETACH);
        assert!(a, "the rslave bind sees the host's later mount");
        assert!(!b, "the private bind does not");
        assert!(a_line.contains("shared:") && a_line.contains("master:"), "slave and shared: {a_line}");
    }

    fn options_of(p: &Path) -> String {
        let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let line = text.lines().find(|l| l.split_whitespace().nth(4) == Some(&*p.to_string_lossy())).expect("mounted");
        line.split_whitespace().nth(5).expect("options").to_string()
    }

    /// As root: a `:ro` bind is read-only all the way down (a submount of the source
    /// too), nosuid and nodev, and a symlink planted at the mount point is refused.
    #[test]
    fn read_only_binds_are_recursive_nosuid_nodev_and_refuse_planted_symlinks() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (does not skip)");
        let src = tempfile::tempdir().expect("src");
        let sub = src.path().join("sub");
        std::fs::create_dir(&sub).expect("sub");
        mount(Some("tmpfs"), &sub, Some("tmpfs"), MsFlags::empty(), Some("size=1m")).expect("submount");
        let share = tempfile::tempdir().expect("share");
        let result = std::panic::catch_unwind(|| {
            bind(src.path(), share.path(), Path::new("c1/volumes/0"), true).expect("bind");
            let dst = share.path().join("c1/volumes/0");
            assert!(std::fs::write(dst.join("sub/new"), "x").is_err(), "the submount is read-only too");
            for p in [dst.clone(), dst.join("sub")] {
                let o = options_of(&p);
                assert!(o.split(',').any(|f| f == "ro"), "{}: {o}", p.display());
                assert!(o.contains("nosuid") && o.contains("nodev"), "{}: {o}", p.display());
            }
            let outside = tempfile::tempdir().expect("outside");
            std::os::unix::fs::symlink(outside.path(), share.path().join("c1/evil")).expect("plant");
            assert!(bind(src.path(), share.path(), Path::new("c1/evil/x"), false).is_err(), "through a symlink");
            assert!(mounts_under(outside.path()).is_empty(), "nothing mounted outside the share");
            unmount_and_remove(share.path()).expect("cleanup");
        });
        let _ = umount2(&sub, MntFlags::MNT_DETACH);
        assert!(result.is_ok(), "see the panic above");
    }
}
