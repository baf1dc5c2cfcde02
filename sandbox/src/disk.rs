//! A disk given to a sandbox's guest (virtio-blk): what the backends and the
//! placement both speak of.

use std::path::PathBuf;

/// A disk given to the guest, found there by its serial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskAttach {
    /// Empty for a template's placeholder ([`DiskAttach::placeholder`]).
    pub path: PathBuf,
    /// At most 20 printable bytes (virtio-blk's device id).
    pub serial: String,
    /// The filesystem on it (`isola_protocol::DISK_FILESYSTEMS`).
    pub fstype: String,
    /// An image (read-only, shared) or a container's own layer (read-write).
    pub read_only: bool,
}

impl DiskAttach {
    /// Slot `i` of a template: an empty disk each clone fills with its own file.
    pub fn placeholder(i: usize) -> Self {
        DiskAttach { path: PathBuf::new(), serial: format!("isola-slot{i}"), fstype: String::new(), read_only: true }
    }

    pub fn is_placeholder(&self) -> bool {
        self.path.as_os_str().is_empty()
    }
}
