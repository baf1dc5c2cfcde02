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

/// [`find_disk`], waiting up to `timeout` for it to have a size: in a guest restored
/// from a template the disk was an empty placeholder, and the kernel learns its new
/// capacity from a config interrupt it handles in the background.
pub fn wait_for_disk(sys_block: &Path, serial: &str, timeout: std::time::Duration) -> Option<PathBuf> {
    let until = std::time::Instant::now() + timeout;
    loop {
        if let Some(dev) = find_disk(sys_block, serial) {
            return Some(dev);
        }
        if std::time::Instant::now() >= until {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The device node of the virtio-blk disk whose serial is `serial` and whose size is
/// not zero, looked up in `sys_block` (`/sys/block`): the host names disks by serial,
/// not by the order the guest happened to probe them in.
pub fn find_disk(sys_block: &Path, serial: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(sys_block).ok()?;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("vd") {
            continue;
        }
        match std::fs::read_to_string(e.path().join("serial")) {
            Ok(s) if s.trim_end_matches(['\n', '\0']) == serial => {
                let size = std::fs::read_to_string(e.path().join("size")).unwrap_or_default();
                if size.trim().parse::<u64>().is_ok_and(|n| n > 0) {
                    return Some(Path::new("/dev").join(&*name));
                }
            }
            _ => {}
        }
    }
    None
}

/// Mounts the disk `device` (read-only, filesystem `fstype`) as the container's image
/// and a writable overlay over it at `layout.rootfs`.
pub fn mount_disk(sys: &dyn Syscall, device: &Path, fstype: &str, layout: &Layout) -> Result<(), RootfsError> {
    sys.mkdir_all(&layout.image)?;
    sys.mount(&device.to_string_lossy(), &layout.image, fstype, MsFlags::MS_RDONLY | MsFlags::MS_NODEV, None)?;
    if let Err(e) = mount_overlay(sys, &layout.image, layout) {
        let _ = sys.umount_detach(&layout.image);
        return Err(e);
    }
    Ok(())
}

/// Mounts the disk `device` read-write at `layout.rootfs`: the container's own layer.
pub fn mount_disk_in_place(sys: &dyn Syscall, device: &Path, fstype: &str, layout: &Layout) -> Result<(), RootfsError> {
    sys.mkdir_all(&layout.rootfs)?;
    sys.mount(&device.to_string_lossy(), &layout.rootfs, fstype, MsFlags::empty(), None)?;
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
    // A disk's image is mounted under it (uploaded images are plain directories).
    let _ = sys.umount_detach(&layout.image);
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
    fn a_disk_is_found_by_its_serial_and_mounted_read_only_under_an_overlay() {
        let d = tempfile::tempdir().expect("tmp");
        for (name, serial, size) in [
            ("vda", "isola-other\n", "8\n"),
            ("vdb", "isola-0123", "16\n"),
            ("loop0", "isola-0123", "8"),
            ("vdc", "isola-empty", "0\n"),
        ] {
            std::fs::create_dir_all(d.path().join(name)).expect("mkdir");
            std::fs::write(d.path().join(name).join("serial"), serial).expect("serial");
            std::fs::write(d.path().join(name).join("size"), size).expect("size");
        }
        assert_eq!(find_disk(d.path(), "isola-0123"), Some(PathBuf::from("/dev/vdb")));
        assert_eq!(find_disk(d.path(), "isola-empty"), None, "no capacity yet");
        let started = std::time::Instant::now();
        assert_eq!(wait_for_disk(d.path(), "isola-empty", std::time::Duration::from_millis(50)), None);
        assert!(started.elapsed() >= std::time::Duration::from_millis(50));
        std::fs::write(d.path().join("vdc/size"), "8\n").expect("resized");
        assert_eq!(
            wait_for_disk(d.path(), "isola-empty", std::time::Duration::from_secs(5)),
            Some(PathBuf::from("/dev/vdc"))
        );
        assert_eq!(find_disk(d.path(), "isola-other"), Some(PathBuf::from("/dev/vda")));
        assert_eq!(find_disk(d.path(), "isola-none"), None);
        assert_eq!(find_disk(&d.path().join("missing"), "isola-0123"), None);
        let rec = Recording::default();
        let l = Layout::new(Path::new("/run/isola/c/x"));
        mount_disk(&rec, Path::new("/dev/vdb"), "erofs", &l).expect("mount");
        let calls = rec.calls();
        assert_eq!(calls[1], "mount /dev/vdb /run/isola/c/x/image erofs 0x5 -", "{calls:?}");
        assert!(
            calls.last().is_some_and(|c| c.starts_with("mount overlay /run/isola/c/x/rootfs overlay")),
            "{calls:?}"
        );
        assert!(calls.last().is_some_and(|c| c.contains("lowerdir=/run/isola/c/x/image,")), "{calls:?}");
    }

    #[test]
    fn a_writable_disk_is_the_root_itself() {
        let rec = Recording::default();
        let l = Layout::new(Path::new("/run/isola/c/y"));
        mount_disk_in_place(&rec, Path::new("/dev/vda"), "ext4", &l).expect("mount");
        assert_eq!(rec.calls(), ["mkdir /run/isola/c/y/rootfs", "mount /dev/vda /run/isola/c/y/rootfs ext4 0x0 -"]);
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
