//! virtio-blk (device id 2): a raw disk image file as a guest block device — an
//! image's read-only root filesystem, shared by every sandbox of that image.
//!
//! Requests are served by the device's own event-manager thread with `pread`/`pwrite`
//! through a bounce buffer, not io_uring: the disks are read-mostly images in the
//! host's page cache, a thread per device keeps the vCPUs off the I/O path, and the
//! VMM's seccomp filter stays free of io_uring (which would let a compromised VMM
//! reach syscalls past its filter).

mod device;
mod disk;
mod event_handler;
mod queues;

#[cfg(test)]
mod tests;

pub use device::Block;
pub use disk::{DiskBackend, DiskFile, EmptyDisk, MemDisk};
pub use queues::{process_queue, BlockCounters, Disk};

pub const BLOCK_DEVICE_ID: u32 = 2;
pub const QUEUE_SIZE: u16 = 256;
pub const SECTOR: u64 = 512;
/// The longest serial (`GET_ID`) the spec allows.
pub const ID_BYTES: usize = 20;
/// Most segments and bytes per segment we offer; a request beyond their product is
/// refused with IOERR, so a guest cannot make the device buffer without bound.
pub const SEG_MAX: u32 = 32;
pub const SIZE_MAX: u32 = 64 << 10;
pub const MAX_REQUEST_BYTES: usize = (SEG_MAX as usize) * (SIZE_MAX as usize);

/// Feature bits (virtio 1.2 §5.2.3).
pub mod feature {
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
}

/// Request types and statuses (§5.2.6).
pub mod request {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
    pub const S_OK: u8 = 0;
    pub const S_IOERR: u8 = 1;
    pub const S_UNSUPP: u8 = 2;
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("cannot open disk {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("disk {path}: {reason}")]
    Bad { path: String, reason: String },
    #[error("bad --disk {0:?}: {1}")]
    Spec(String, &'static str),
}

/// `--disk PATH[,ro][,id=SERIAL]`: one disk as the command line names it; or
/// `--disk-placeholder SERIAL`: an empty read-only disk (no path) holding a slot in a
/// template, which a clone restored from it fills with its own file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: Option<std::path::PathBuf>,
    pub read_only: bool,
    pub serial: String,
}

impl DiskSpec {
    pub fn placeholder(serial: &str) -> Result<Self, BlockError> {
        if serial.len() > ID_BYTES || !serial.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BlockError::Spec(serial.into(), "id: at most 20 printable characters"));
        }
        Ok(DiskSpec { path: None, read_only: true, serial: serial.into() })
    }
}

impl std::str::FromStr for DiskSpec {
    type Err = BlockError;
    fn from_str(s: &str) -> Result<Self, BlockError> {
        let mut parts = s.split(',');
        let path = parts.next().filter(|p| !p.is_empty()).ok_or(BlockError::Spec(s.into(), "no path"))?;
        let mut d = DiskSpec { path: Some(path.into()), read_only: false, serial: String::new() };
        for p in parts {
            match p.split_once('=') {
                None if p == "ro" => d.read_only = true,
                Some(("id", id)) if id.len() <= ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic()) => {
                    d.serial = id.into()
                }
                Some(("id", _)) => return Err(BlockError::Spec(s.into(), "id: at most 20 printable characters")),
                _ => return Err(BlockError::Spec(s.into(), "options are ro and id=SERIAL")),
            }
        }
        Ok(d)
    }
}
