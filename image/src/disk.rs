//! An image's root filesystem as a disk: one read-only erofs image per set of layers,
//! built once from the store's unpacked rootfs with `mkfs.erofs`, owned by the store
//! and handed read-only to every sandbox of that image (virtio-blk).
//!
//! erofs rather than ext4: it is read-only by design (no journal, nothing a guest
//! could make the host's copy want to replay), it is built from a directory without
//! mounting anything on the host, it is compact (no free space, no block groups), and
//! its reads are plain block reads the guest's page cache keeps.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::store::{disk_key, disk_serial, ImageDisk, ImageRecord, Store};

pub const MKFS: &str = "mkfs.erofs";
/// The filesystem on an image's disk, as the guest mounts it.
pub const FSTYPE: &str = "erofs";

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("image {image} has more than {limit} files: refused as a disk")]
    TooManyInodes { image: String, limit: u64 },
    #[error("{MKFS} is missing (apt-get install erofs-utils): {0}")]
    NoMkfs(std::io::Error),
    #[error("{MKFS} failed for image {image}: {status}: {stderr}")]
    Mkfs { image: String, status: String, stderr: String },
    #[error("the disk of image {image} would pass {limit} bytes: refused")]
    TooLarge { image: String, limit: u64 },
    #[error("image {0} has no unpacked rootfs in the store")]
    NoRootfs(String),
}

impl Store {
    /// `r`'s disk, built now if it was not (bounded by the store's unpack limit in
    /// bytes and its inode limit); a failed build leaves nothing.
    pub fn ensure_disk(&self, r: &ImageRecord) -> Result<ImageDisk, DiskError> {
        let max_inodes = self.max_inodes();
        if let Some(d) = self.disk(r) {
            return Ok(d);
        }
        let k = disk_key(&r.layers);
        let rootfs = self.rootfs(r);
        if !rootfs.is_dir() {
            return Err(DiskError::NoRootfs(r.name.clone()));
        }
        let inodes = count_inodes(&rootfs, max_inodes).map_err(|source| DiskError::Io {
            what: "walking",
            path: rootfs.clone(),
            source,
        })?;
        if inodes > max_inodes {
            return Err(DiskError::TooManyInodes { image: r.name.clone(), limit: max_inodes });
        }
        let dst = self.disk_path(&k);
        let dir = dst.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(|source| DiskError::Io { what: "creating", path: dir.into(), source })?;
        let tmp = self.tmp_file(&format!("disk-{k}"));
        let _ = std::fs::remove_file(&tmp);
        // Metadata on top of the bytes: a little per inode and per directory block.
        let limit = self.max_unpacked().saturating_add(inodes.saturating_mul(4096)).saturating_add(16 << 20);
        if let Err(e) = mkfs(&rootfs, &tmp, limit, &r.name) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(source) = std::fs::rename(&tmp, &dst) {
            let _ = std::fs::remove_file(&tmp);
            return Err(DiskError::Io { what: "storing", path: dst, source });
        }
        log::info!("built the disk of {} ({} files) at {}", r.name, inodes, dst.display());
        Ok(ImageDisk { path: dst, serial: disk_serial(&k) })
    }
}

/// An erofs image of the directory `src` at `out`, at most `limit` bytes (benchmarks
/// and tools; the store's own disks go through [`Store::ensure_disk`]).
pub fn build_erofs(src: &Path, out: &Path, limit: u64) -> Result<(), DiskError> {
    mkfs(src, out, limit, &src.display().to_string())
}

/// Entries under `root`, without following symlinks, stopping once past `limit`.
fn count_inodes(root: &Path, limit: u64) -> std::io::Result<u64> {
    let mut n = 1u64;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            n += 1;
            if n > limit {
                return Ok(n);
            }
            // file_type() is the entry's own type: a symlink is never followed.
            if e.file_type()?.is_dir() {
                dirs.push(e.path());
            }
        }
    }
    Ok(n)
}

/// `mkfs.erofs` of `src` into `out`, its output file capped at `limit` bytes by
/// RLIMIT_FSIZE: the kernel stops it (SIGXFSZ) rather than let a hostile image fill
/// the disk. Errors name `image`.
fn mkfs(src: &Path, out: &Path, limit: u64, image: &str) -> Result<(), DiskError> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let mut c = Command::new(MKFS);
    // Uncompressed: the guest reads it straight, and it is shared, not shipped.
    c.arg("--quiet").arg("-T0").arg(out).arg(src);
    c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    c.stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        c.pre_exec(move || {
            let l = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = c.output().map_err(DiskError::NoMkfs)?;
    if o.status.success() {
        return Ok(());
    }
    let over =
        o.status.signal() == Some(libc::SIGXFSZ) || String::from_utf8_lossy(&o.stderr).contains("File too large");
    if over {
        return Err(DiskError::TooLarge { image: image.into(), limit });
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stderr: String = stderr.chars().take(2000).collect();
    Err(DiskError::Mkfs { image: image.into(), status: o.status.to_string(), stderr: stderr.trim().into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, layers: &[&str]) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            manifest_digest: format!("sha256:{}", "a".repeat(64)),
            config_digest: format!("sha256:{}", "b".repeat(64)),
            layers: layers.iter().map(|s| s.to_string()).collect(),
            size: 0,
            created_unix: 0,
        }
    }

    fn store_with_rootfs(files: usize) -> (tempfile::TempDir, Store, ImageRecord) {
        let t = tempfile::tempdir().expect("tmp");
        let s = Store::open(t.path()).expect("store");
        let r = record("test/img:1", &["sha256:1", "sha256:2"]);
        let root = s.rootfs(&r);
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        for i in 0..files {
            std::fs::write(root.join(format!("etc/f{i}")), format!("file {i}\n")).expect("write");
        }
        std::os::unix::fs::symlink("/etc/passwd", root.join("etc/link")).expect("symlink");
        (t, s, r)
    }

    #[test]
    fn a_disk_is_built_once_per_layer_set_and_is_an_erofs_image() {
        let (_t, s, r) = store_with_rootfs(3);
        assert!(s.disk(&r).is_none());
        let d = s.ensure_disk(&r).expect("built (apt-get install erofs-utils)");
        let head = std::fs::read(&d.path).expect("read");
        // The erofs superblock sits at 1024 with its magic first.
        assert_eq!(&head[1024..1028], &0xE0F5_E1E2u32.to_le_bytes());
        assert!(d.serial.len() <= 20 && d.serial.starts_with("isola-"), "{}", d.serial);
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&d.path).expect("meta"));
        let other_tag = ImageRecord { name: "test/img:other".into(), ..r.clone() };
        let again = s.ensure_disk(&other_tag).expect("found");
        assert_eq!(again, d, "same layers, same disk");
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&again.path).expect("meta")), inode);
        let other = record("x", &["sha256:3"]);
        assert_ne!(disk_key(&other.layers), disk_key(&r.layers));
    }

    #[test]
    fn too_many_files_or_bytes_are_refused_and_leave_nothing() {
        let (t, mut s, r) = store_with_rootfs(50);
        s.set_max_inodes(20);
        let e = s.ensure_disk(&r).expect_err("too many files");
        assert!(matches!(e, DiskError::TooManyInodes { limit: 20, .. }), "{e}");
        s.set_max_inodes(crate::store::DEFAULT_MAX_INODES);
        s.set_max_unpacked(0);
        std::fs::write(s.rootfs(&r).join("big"), vec![1u8; 64 << 20]).expect("big file");
        let e = s.ensure_disk(&r).expect_err("too large");
        assert!(matches!(e, DiskError::TooLarge { .. }), "{e}");
        assert!(s.disk(&r).is_none());
        let left: Vec<_> = std::fs::read_dir(t.path().join("tmp")).expect("tmp").collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
