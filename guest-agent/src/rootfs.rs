//! Container root filesystems: an uploaded tar unpacked inside the guest (or a
//! directory already there) as the read-only lower layer, an overlay with a tmpfs
//! upper on top so the image itself is never written.

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
