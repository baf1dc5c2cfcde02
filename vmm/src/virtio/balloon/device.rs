//! The balloon device model: config space (target and actual, in pages), the handle
//! the control API sets a target through, and the handler thread's lifecycle.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::event_handler::BalloonHandler;
use super::{config, feature, BalloonCounters, MemoryDiscard, BALLOON_DEVICE_ID, PAGE, QUEUE_SIZE};
use crate::virtio::snapshot::DeviceSnapshotError;
use crate::virtio::worker::{spawn, stop_pair, WorkerHandle};
use crate::virtio::{read_config_bytes, ActivateContext, ActivateError, Interrupt, VirtioDevice, INT_CONFIG};

const QUEUE_SIZES: [u16; 3] = [QUEUE_SIZE; 3];

/// What the host and the guest agree on, shared by the device and the control API.
#[derive(Default)]
pub struct BalloonControl {
    target_pages: AtomicU32,
    actual_pages: AtomicU32,
    /// The running device's interrupt, to say the target changed.
    interrupt: Mutex<Option<Arc<Interrupt>>>,
    counters: Mutex<BalloonCounters>,
}

impl BalloonControl {
    /// Asks the guest to hold `bytes` in the balloon (rounded down to pages, capped at
    /// what a u32 page count holds).
    pub fn set_target(&self, bytes: u64) -> std::io::Result<()> {
        let pages = u32::try_from(bytes / PAGE).unwrap_or(u32::MAX);
        self.target_pages.store(pages, Ordering::Release);
        match self.interrupt.lock() {
            Ok(i) => match i.as_ref() {
                Some(i) => i.trigger(INT_CONFIG),
                None => Ok(()),
            },
            Err(_) => Err(std::io::Error::other("balloon interrupt lock poisoned")),
        }
    }

    pub fn target_bytes(&self) -> u64 {
        u64::from(self.target_pages.load(Ordering::Acquire)) * PAGE
    }

    /// What the guest says it holds in the balloon.
    pub fn actual_bytes(&self) -> u64 {
        u64::from(self.actual_pages.load(Ordering::Acquire)) * PAGE
    }

    pub fn counters(&self) -> BalloonCounters {
        self.counters.lock().map(|c| *c).unwrap_or_default()
    }

    pub(super) fn publish(&self, c: BalloonCounters) {
        if let Ok(mut mine) = self.counters.lock() {
            *mine = c;
        }
    }

    fn set_interrupt(&self, i: Option<Arc<Interrupt>>) {
        if let Ok(mut mine) = self.interrupt.lock() {
            *mine = i;
        }
    }
}

pub struct Balloon {
    control: Arc<BalloonControl>,
    worker: Option<WorkerHandle<BalloonHandler>>,
}

impl Balloon {
    pub fn new() -> (Self, Arc<BalloonControl>) {
        let control = Arc::new(BalloonControl::default());
        (Balloon { control: control.clone(), worker: None }, control)
    }

    fn config(&self) -> [u8; config::LEN] {
        let mut c = [0u8; config::LEN];
        c[0..4].copy_from_slice(&self.control.target_pages.load(Ordering::Acquire).to_le_bytes());
        c[4..8].copy_from_slice(&self.control.actual_pages.load(Ordering::Acquire).to_le_bytes());
        c
    }

    /// Stops the handler thread; its queues as they stand, if it was running.
    fn stop_worker(&mut self) -> Option<Vec<virtio_queue::QueueState>> {
        self.control.set_interrupt(None);
        let h = self.worker.take()?.stop()?;
        self.control.publish(h.counters);
        Some(h.queues.iter().map(|q| q.state()).collect())
    }
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        BALLOON_DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        feature::DEFLATE_ON_OOM | feature::PAGE_REPORTING
    }

    /// A driver without page reporting sets up only the inflate and deflate queues.
    fn queues_in_use(&self, acked_features: u64) -> usize {
        super::queues_in_use(acked_features)
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config(), offset, data);
    }

    /// The driver writes `actual` (how many pages it holds); the target is ours.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        match (offset, <[u8; 4]>::try_from(data)) {
            (config::ACTUAL, Ok(b)) => self.control.actual_pages.store(u32::from_le_bytes(b), Ordering::Release),
            _ => log::debug!("balloon: guest wrote {} bytes of config at {offset:#x}; ignored", data.len()),
        }
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        if self.worker.is_some() {
            return Err(ActivateError::AlreadyActive("balloon"));
        }
        let (stop, theirs) = stop_pair()?;
        let handler = BalloonHandler {
            mem: ctx.mem,
            // All three kept (a snapshot saves every queue the transport has), the
            // reporting one served only when negotiated.
            in_use: super::queues_in_use(ctx.acked_features),
            queues: ctx.queues,
            queue_events: ctx.queue_events,
            interrupt: ctx.interrupt.clone(),
            discard: MemoryDiscard,
            stop: theirs,
            stopped: false,
            counters: self.control.counters(),
            control: self.control.clone(),
        };
        self.worker = Some(spawn("balloon", handler, stop)?);
        self.control.set_interrupt(Some(ctx.interrupt));
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
        self.control.actual_pages.store(0, Ordering::Release);
    }

    fn supports_snapshot(&self) -> bool {
        true
    }

    /// A clone starts with its own target (none until its host sets one), which the
    /// guest must read again rather than keep the template's.
    fn config_changes_on_restore(&self) -> bool {
        true
    }

    fn quiesce(&mut self) -> Result<Option<Vec<virtio_queue::QueueState>>, DeviceSnapshotError> {
        if self.worker.is_none() {
            return Ok(None);
        }
        self.stop_worker().map(Some).ok_or(DeviceSnapshotError::WorkerLost("balloon"))
    }
}

impl Drop for Balloon {
    fn drop(&mut self) {
        self.stop_worker();
    }
}
