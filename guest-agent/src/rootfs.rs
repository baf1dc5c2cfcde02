//! Container root filesystems: an uploaded tar unpacked inside the guest (or an image
//! directory in the share) as the read-only lower layer, an overlay with a tmpfs upper
//! on top so the image itself is never written; or the container's own writable layer
//! in the share (a bundle's rootfs), bound and written in place as under runc.

use std::io::Read;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::syscall::{Syscall, SyscallError};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("unpacking rootfs: {0}")]
    Unpack(std::io::Error),
    #[error("rootfs entry {0:?} would land outside the rootfs")]
    Escape(String),
    #[error(transparent)]
    Sys(#[from] SyscallError),
}

/// Unpacks a tar stream into `dest`. Entries are unpacked one by one with `unpack_in`,
/// which refuses paths that climb out of `dest` (`..`) and never follows symlinks out.
pub fn unpack(stream: impl Read, dest: &Path) -> Result<u64, RootfsError> {
    std::fs::create_dir_all(dest).map_err(RootfsError::Unpack)?;
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    let mut count = 0;
    for entry in archive.entries().map_err(RootfsError::Unpack)? {
        let mut entry = entry.map_err(RootfsError::Unpack)?;
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        if !entry.unpack_in(dest).map_err(RootfsError::Unpack)? {
            return Err(RootfsError::Escape(name));
        }
        count += 1;
    }
    Ok(count)
}

/// Layout of one container's directory in the agent's state dir.
pub struct Layout {
    pub image: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub rootfs: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Self {
        Self { image: dir.join("image"), upper: dir.join("upper"), work: dir.join("work"), rootfs: dir.join("rootfs") }
    }
}

/// Mounts `lower` (read-only) under a writable overlay at `layout.rootfs`.
pub fn mount_overlay(sys: &dyn Syscall, lower: &Path, layout: &Layout) -> Result<(), RootfsError> {
    for d in [&layout.upper, &layout.work, &layout.rootfs] {
        sys.mkdir_all(d)?;
    }
    let data =
        format!("lowerdir={},upperdir={},workdir={}", lower.display(), layout.upper.display(), layout.work.display());
    sys.mount("overlay", &layout.rootfs, "overlay", MsFlags::empty(), Some(&data))?;
    Ok(())
}

/// Binds the container's own layer `dir` at `layout.rootfs`: its writes land there.
pub fn bind_in_place(sys: &dyn Syscall, dir: &Path, layout: &Layout) -> Result<(), RootfsError> {
    sys.mkdir_all(&layout.rootfs)?;
    sys.mount(&dir.to_string_lossy(), &layout.rootfs, "", MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    Ok(())
}

/// Removes a container's directory once its rootfs is unmounted. Only then: a rootfs
/// still mounted is a tenant's data (in place, the host's bundle), which a recursive
/// removal would delete; an empty mount point is the proof it is gone.
pub fn remove_container_dir(sys: &dyn Syscall, dir: &Path, layout: &Layout) -> Result<(), std::io::Error> {
    let _ = sys.umount_detach(&layout.rootfs);
    match std::fs::remove_dir(&layout.rootfs) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::remove_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Recording;

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses "..", so write the raw name like a hostile archive would.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn in_place_binds_the_layer_itself() {
        let rec = Recording::default();
        let l = Layout::new(Path::new("/run/isola/c/x"));
        bind_in_place(&rec, Path::new("/run/isola/shared/x/rootfs"), &l).expect("bind");
        assert_eq!(
            rec.calls(),
            ["mkdir /run/isola/c/x/rootfs", "mount /run/isola/shared/x/rootfs /run/isola/c/x/rootfs  0x5000 -"]
        );
    }

    /// A rootfs that is still mounted (its unmount failed) keeps its data: the
    /// container's directory is left, not emptied through the mount.
    #[test]
    fn a_container_dir_with_a_rootfs_still_in_it_is_not_removed() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = d.path().join("c");
        let l = Layout::new(&dir);
        std::fs::create_dir_all(l.rootfs.join("etc")).expect("mkdir");
        std::fs::write(l.rootfs.join("etc/data"), "tenant data").expect("write");
        // The recording Syscall unmounts nothing, like a failed unmount.
        remove_container_dir(&Recording::default(), &dir, &l).expect_err("still holds data");
        assert_eq!(std::fs::read_to_string(l.rootfs.join("etc/data")).expect("kept"), "tenant data");
        std::fs::remove_dir_all(l.rootfs.join("etc")).expect("empty it");
        std::fs::create_dir_all(&l.upper).expect("upper");
        remove_container_dir(&Recording::default(), &dir, &l).expect("empty mount point");
        assert!(!dir.exists());
    }

    #[test]
    fn unpacks_files() {
        let d = tempfile::tempdir().expect("tmp");
        let n = unpack(&tar_with(&[("bin/hello", b"hi")])[..], d.path()).expect("unpack");
        assert_eq!(n, 1);
        assert_eq!(std::fs::read(d.path().join("bin/hello")).expect("file"), b"hi");
    }

    #[test]
    fn path_escapes_are_refused() {
        let outer = tempfile::tempdir().expect("tmp");
        let dest = outer.path().join("root");
        let e = unpack(&tar_with(&[("../escaped", b"x")])[..], &dest).expect_err("escape");
        assert!(matches!(e, RootfsError::Escape(ref n) if n.contains("escaped")), "{e}");
        assert!(!outer.path().join("escaped").exists());
    }

    #[test]
    fn garbage_is_an_error() {
        let d = tempfile::tempdir().expect("tmp");
        assert!(unpack(&[1u8; 1024][..], d.path()).is_err());
    }

    #[test]
    fn overlay_uses_the_lower_and_per_container_upper() {
        let rec = Recording::default();
        let l = Layout::new(Path::new("/run/isola/c/x"));
        mount_overlay(&rec, Path::new("/images/busybox"), &l).expect("mount");
        let calls = rec.calls();
        assert_eq!(
            calls.last().expect("mount").split(' ').take(4).collect::<Vec<_>>(),
            ["mount", "overlay", "/run/isola/c/x/rootfs", "overlay"]
        );
        assert!(calls
            .last()
            .expect("mount")
            .contains("lowerdir=/images/busybox,upperdir=/run/isola/c/x/upper,workdir=/run/isola/c/x/work"));
    }
}
