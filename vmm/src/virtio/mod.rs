//! virtio devices over the MMIO transport (virtio 1.x, "version 2" registers).

pub mod balloon;
pub mod block;
pub mod fs;
mod interrupt;
mod mmio;
pub mod net;
pub mod snapshot;
pub mod vsock;
pub mod worker;

#[cfg(test)]
mod mock_driver;

pub use interrupt::{Interrupt, INT_CONFIG, INT_VRING};
pub use mmio::{MmioTransport, NOTIFY_REG_OFFSET};

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Whether the `n`th occurrence of something a guest can repeat at will (a malformed
/// chain, a stray packet) is worth a log line: the first ten, then every power of two,
/// so a hostile guest cannot fill the host's disk through our log.
pub fn worth_logging(n: u64) -> bool {
    n <= 10 || n.is_power_of_two()
}

/// VIRTIO_F_VERSION_1: every device we offer is a modern (1.x) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    pub const FAILED: u32 = 128;
}

/// Errors when a device starts.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("queue {0} is not ready or its rings do not fit in guest memory")]
    BadQueue(usize),
    #[error("{0} is already running")]
    AlreadyActive(&'static str),
    #[error("{what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    #[error(transparent)]
    Fs(#[from] fs::FsError),
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct ActivateContext {
    pub mem: GuestMemoryMmap,
    pub queues: Vec<Queue>,
    /// One eventfd per queue, written when the driver notifies that queue (by KVM
    /// ioeventfd, or by the transport when ioeventfds are not registered).
    pub queue_events: Vec<EventFd>,
    pub interrupt: std::sync::Arc<Interrupt>,
    /// Features the driver accepted.
    pub acked_features: u64,
}

impl ActivateContext {
    /// A context to (re)start from `states`, with copies of the notify eventfds (the
    /// caller's keep theirs): one rule for the transport and for devices restarting
    /// their own rings.
    pub fn from_states(
        mem: &GuestMemoryMmap,
        states: &[virtio_queue::QueueState],
        queue_events: &[EventFd],
        interrupt: &std::sync::Arc<Interrupt>,
        acked_features: u64,
    ) -> Result<Self, snapshot::DeviceSnapshotError> {
        use snapshot::DeviceSnapshotError as E;
        let queue_events = queue_events.iter().map(EventFd::try_clone).collect::<Result<_, _>>().map_err(E::EventFd)?;
        let queues = states
            .iter()
            .enumerate()
            .map(|(index, q)| Queue::try_from(*q).map_err(|source| E::Queue { index, source }))
            .collect::<Result<_, _>>()?;
        Ok(ActivateContext { mem: mem.clone(), queues, queue_events, interrupt: interrupt.clone(), acked_features })
    }
}

/// A virtio device model behind the MMIO transport.
pub trait VirtioDevice: Send {
    /// virtio device id (vsock = 19, net = 1, block = 2, balloon = 5, fs = 26).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the number of queues is the slice's length.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits the device offers (VIRTIO_F_VERSION_1 is added by the transport).
    fn features(&self) -> u64;
    /// How many of its queues a driver that accepted `acked_features` sets up (the
    /// first ones); the others may stay unready.
    fn queues_in_use(&self, _acked_features: u64) -> usize {
        self.queue_max_sizes().len()
    }
    fn read_config(&self, offset: u64, data: &mut [u8]);
    fn write_config(&mut self, offset: u64, data: &[u8]);
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;
    /// Stops the device after a driver reset; queues are rebuilt on the next activate.
    fn reset(&mut self);
    /// Whether [`VirtioDevice::quiesce`] and [`VirtioDevice::resume`] work (snapshots).
    fn supports_snapshot(&self) -> bool {
        false
    }
    /// Stops a running device's processing for a snapshot and returns its queues as
    /// they stand (None: it was not running).
    fn quiesce(&mut self) -> Result<Option<Vec<virtio_queue::QueueState>>, snapshot::DeviceSnapshotError> {
        Err(snapshot::DeviceSnapshotError::Unsupported(device_name(self.device_type())))
    }
    /// Runs again from `ctx`'s queues: after a snapshot, or (`restored`) in a VM
    /// restored from one.
    fn resume(&mut self, ctx: ActivateContext, _restored: bool) -> Result<(), ActivateError> {
        self.activate(ctx)
    }
    /// Whether a restored device's config space may differ from the snapshotted one
    /// (a disk attached to a template's placeholder): the transport then tells the
    /// driver to read it again.
    fn config_changes_on_restore(&self) -> bool {
        false
    }
}

/// The name a snapshot's header lists a device under.
pub fn device_name(device_type: u32) -> &'static str {
    match device_type {
        1 => "net",
        2 => "block",
        5 => "balloon",
        19 => "vsock",
        26 => "fs",
        _ => "unknown",
    }
}

/// Reads `data.len()` bytes at `offset` of a config-space image, zero past its end.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}
