//! What a block device reads and writes: a file, or a test double.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{BlockError, SECTOR};

/// A disk's bytes. Offsets and lengths are checked against [`DiskBackend::len`] by the
/// queue code before they get here.
pub trait DiskBackend: Send {
    fn size(&self) -> u64;
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
}

/// A disk in memory that counts what reached it (tests and fuzz targets).
#[derive(Default)]
pub struct MemDisk {
    pub bytes: Vec<u8>,
    pub writes: u64,
    pub flushes: u64,
}

impl DiskBackend for MemDisk {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let src = usize::try_from(offset).ok().and_then(|o| self.bytes.get(o..o.checked_add(buf.len())?));
        buf.copy_from_slice(src.ok_or(std::io::ErrorKind::UnexpectedEof)?);
        Ok(())
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let end = usize::try_from(offset).ok().and_then(|o| Some((o, o.checked_add(buf.len())?)));
        let dst = end.and_then(|(o, e)| self.bytes.get_mut(o..e)).ok_or(std::io::ErrorKind::UnexpectedEof)?;
        dst.copy_from_slice(buf);
        self.writes += 1;
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.flushes += 1;
        Ok(())
    }
}

/// No bytes at all: a template's placeholder until a clone is given its file.
pub struct EmptyDisk;

impl DiskBackend for EmptyDisk {
    fn size(&self) -> u64 {
        0
    }
    fn read_at(&mut self, _: &mut [u8], _: u64) -> std::io::Result<()> {
        Err(std::io::ErrorKind::UnexpectedEof.into())
    }
    fn write_at(&mut self, _: &[u8], _: u64) -> std::io::Result<()> {
        Err(std::io::ErrorKind::PermissionDenied.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A raw image file. Read-only disks are opened read-only, so not even a VMM the guest
/// took over can write them.
pub struct DiskFile {
    file: File,
    len: u64,
}

impl DiskFile {
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| BlockError::Open { path: path.display().to_string(), source };
        // No symlink is followed at the last component, and no device node is opened
        // as a disk by a path someone else could swap.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        if !meta.is_file() {
            return Err(BlockError::Bad { path: path.display().to_string(), reason: "not a regular file".into() });
        }
        // The guest sees whole sectors; a partial last one is left out.
        Ok(DiskFile { file, len: meta.len() / SECTOR * SECTOR })
    }
}

impl DiskBackend for DiskFile {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}
