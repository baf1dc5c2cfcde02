//! virtio-fs (device id 26) as a vhost-user frontend: the FUSE traffic goes straight
//! between the guest's queues and virtiofsd, which maps guest RAM (memfd-backed, so
//! the VMM needs `--shared-memory`). The VMM only forwards virtiofsd's "used buffer"
//! calls to the guest, because virtio-mmio needs InterruptStatus set first.

mod device;

#[cfg(test)]
mod tests;

pub use device::Fs;

pub const FS_DEVICE_ID: u32 = 26;
/// One high-priority queue and one request queue.
pub const NUM_QUEUES: usize = 2;
pub const QUEUE_SIZE: u16 = 256;
/// The longest tag the config space holds.
pub const TAG_MAX: usize = 36;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("virtio-fs tag must be 1-{TAG_MAX} bytes, got {0:?}")]
    BadTag(String),
    #[error("cannot reach virtiofsd at {path}: {reason}")]
    Connect { path: String, reason: String },
    #[error("vhost-user {op}: {reason}")]
    VhostUser { op: &'static str, reason: String },
    #[error("virtio-fs needs guest RAM shared with virtiofsd (isola-vmm --shared-memory)")]
    NotShared,
}
