//! The vsock device model: config space (guest CID) and the handler thread's lifecycle.

use super::event_handler::VsockHandler;
use super::{Counters, VsockBackend, QUEUE_SIZE, VSOCK_DEVICE_ID};
use crate::virtio::snapshot::DeviceSnapshotError;
use crate::virtio::worker::{spawn, stop_pair, WorkerHandle};
use crate::virtio::{read_config_bytes, ActivateContext, ActivateError, VirtioDevice};

const QUEUE_SIZES: [u16; 3] = [QUEUE_SIZE; 3];

pub struct Vsock {
    guest_cid: u64,
    backend: Option<Box<dyn VsockBackend>>,
    worker: Option<WorkerHandle<VsockHandler>>,
    counters: Counters,
}

impl Vsock {
    pub fn new(guest_cid: u64, backend: Box<dyn VsockBackend>) -> Self {
        Self { guest_cid, backend: Some(backend), worker: None, counters: Counters::default() }
    }

    /// Counters as of the last reset.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Stops the worker, keeping the backend's connections (a snapshot; the VM goes on).
    fn stop_worker_keeping(&mut self) -> Option<Vec<virtio_queue::QueueState>> {
        let w = self.worker.take()?;
        match w.stop() {
            Some(h) => {
                self.counters = h.counters;
                self.backend = Some(h.backend);
                Some(h.queues.iter().map(|q| q.state()).collect())
            }
            None => {
                log::warn!("vsock: worker ended without returning its backend");
                None
            }
        }
    }

    fn start(&mut self, ctx: ActivateContext, pending_reset: bool) -> Result<(), ActivateError> {
        let backend = self.backend.take().ok_or(ActivateError::AlreadyActive("vsock"))?;
        let (stop, theirs) = stop_pair()?;
        let handler = VsockHandler {
            mem: ctx.mem,
            queues: ctx.queues,
            queue_events: ctx.queue_events,
            interrupt: ctx.interrupt,
            backend,
            guest_cid: self.guest_cid,
            stop: theirs,
            stopped: false,
            counters: self.counters,
            pending_reset,
        };
        self.worker = Some(spawn("vsock", handler, stop)?);
        Ok(())
    }

    fn stop_worker(&mut self) {
        let Some(w) = self.worker.take() else { return };
        match w.stop() {
            Some(mut h) => {
                h.backend.reset();
                self.counters = h.counters;
                self.backend = Some(h.backend);
            }
            None => log::warn!("vsock: worker ended without returning its backend"),
        }
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VSOCK_DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        0
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.guest_cid.to_le_bytes(), offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        log::debug!("vsock: guest wrote read-only config at {offset:#x}");
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        self.start(ctx, false)
    }

    fn supports_snapshot(&self) -> bool {
        true
    }

    fn quiesce(&mut self) -> Result<Option<Vec<virtio_queue::QueueState>>, DeviceSnapshotError> {
        Ok(self.stop_worker_keeping())
    }

    /// After a restore, the guest hears TRANSPORT_RESET: connections of the snapshot
    /// are gone (this VMM's muxer has none) and the CID in config space is read again.
    fn resume(&mut self, ctx: ActivateContext, restored: bool) -> Result<(), ActivateError> {
        self.start(ctx, restored)
    }

    fn reset(&mut self) {
        self.stop_worker();
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        self.stop_worker();
    }
}
