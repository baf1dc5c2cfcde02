//! A virtio-mmio transport's state in a snapshot: its registers and each queue's
//! configuration and ring positions (the device's own copies when it runs).

use serde::{Deserialize, Serialize};
use virtio_queue::QueueState;

/// Why a device or its transport could not be snapshotted, resumed or restored.
#[derive(Debug, thiserror::Error)]
pub enum DeviceSnapshotError {
    #[error("{0} devices cannot be snapshotted")]
    Unsupported(&'static str),
    #[error("{0}: its worker ended without returning its backend")]
    WorkerLost(&'static str),
    #[error("the running device has no queues")]
    NoQueues,
    #[error("queue {index}: {source}")]
    Queue { index: usize, source: virtio_queue::Error },
    #[error("the snapshot has a {snap} device with {snap_queues} queues here, this VM a {mine} with {my_queues}")]
    Mismatch { snap: &'static str, snap_queues: usize, mine: &'static str, my_queues: usize },
    #[error("queue {index}: max size {snap} in the snapshot, {mine} here")]
    QueueSize { index: usize, snap: u16, mine: u16 },
    #[error("queue {0}: its rings do not fit in guest memory")]
    RingsOutside(usize),
    #[error("cloning a queue's eventfd: {0}")]
    EventFd(#[source] std::io::Error),
    #[error("restoring the interrupt status: {0}")]
    Interrupt(#[source] std::io::Error),
    #[error("starting the device: {0}")]
    Start(#[source] super::ActivateError),
    #[error("fs: GET_VRING_BASE {index}: {source}")]
    VringBase { index: usize, source: vhost::Error },
    #[error(
        "fs devices the guest has used (its share is mounted: FUSE state lives in virtiofsd; \
         take the snapshot before the guest mounts it)"
    )]
    FsInUse,
}

/// `virtio_queue::QueueState`, which has no serde of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub max_size: u16,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx_enabled: bool,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
}

impl From<QueueState> for QueueSnapshot {
    fn from(q: QueueState) -> Self {
        Self {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

impl From<&QueueSnapshot> for QueueState {
    fn from(q: &QueueSnapshot) -> Self {
        Self {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportSnapshot {
    pub device_type: u32,
    pub queue_sel: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub acked_features: u64,
    pub status: u32,
    pub config_generation: u32,
    pub active: bool,
    pub interrupt_status: u32,
    pub queues: Vec<QueueSnapshot>,
}
