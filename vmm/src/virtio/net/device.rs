//! The net device model: config space (MAC) and the handler thread's lifecycle.

use super::event_handler::NetHandler;
use super::{feature, NetBackend, NetCounters, RxState, NET_DEVICE_ID, OFFERED, QUEUE_SIZE};
use crate::virtio::snapshot::DeviceSnapshotError;
use crate::virtio::worker::{spawn, stop_pair, WorkerHandle};
use crate::virtio::{read_config_bytes, ActivateContext, ActivateError, VirtioDevice};

const QUEUE_SIZES: [u16; 2] = [QUEUE_SIZE; 2];

pub struct Net {
    mac: [u8; 6],
    backend: Option<Box<dyn NetBackend>>,
    worker: Option<WorkerHandle<NetHandler>>,
    counters: NetCounters,
}

impl Net {
    pub fn new(mac: [u8; 6], backend: Box<dyn NetBackend>) -> Self {
        Self { mac, backend: Some(backend), worker: None, counters: NetCounters::default() }
    }

    fn stop_worker(&mut self) {
        let Some(w) = self.worker.take() else { return };
        match w.stop() {
            Some(h) => {
                self.counters = h.counters;
                self.backend = Some(h.backend);
            }
            None => log::warn!("net: worker ended without returning its backend"),
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        NET_DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        OFFERED
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.mac, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        log::debug!("net: guest wrote config at {offset:#x}; ignored");
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let mut backend = self.backend.take().ok_or(ActivateError::AlreadyActive("net"))?;
        if let Err(e) = backend.set_offloads(ctx.acked_features) {
            self.backend = Some(backend);
            return Err(ActivateError::Io { what: "tap offloads", source: e });
        }
        let (stop, theirs) = stop_pair()?;
        let mut rx = RxState::default();
        rx.mergeable = ctx.acked_features & feature::MRG_RXBUF != 0;
        let handler = NetHandler {
            mem: ctx.mem,
            queues: ctx.queues,
            queue_events: ctx.queue_events,
            interrupt: ctx.interrupt,
            backend,
            rx,
            stop: theirs,
            stopped: false,
            counters: self.counters,
        };
        self.worker = Some(spawn("net", handler, stop)?);
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
    }

    fn supports_snapshot(&self) -> bool {
        true
    }

    /// A frame the device held for want of a guest buffer is dropped, as a wire
    /// would drop it; the queues go on from where they stand.
    fn quiesce(&mut self) -> Result<Option<Vec<virtio_queue::QueueState>>, DeviceSnapshotError> {
        let Some(w) = self.worker.take() else { return Ok(None) };
        let h = w.stop().ok_or(DeviceSnapshotError::WorkerLost("net"))?;
        self.counters = h.counters;
        self.backend = Some(h.backend);
        Ok(Some(h.queues.iter().map(|q| q.state()).collect()))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_worker();
    }
}
