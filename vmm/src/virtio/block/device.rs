//! The block device model: config space (capacity, limits) and the handler thread's
//! lifecycle.

use super::event_handler::BlockHandler;
use super::{feature, BlockCounters, DiskBackend, BLOCK_DEVICE_ID, QUEUE_SIZE, SECTOR, SEG_MAX, SIZE_MAX};
use crate::virtio::snapshot::DeviceSnapshotError;
use crate::virtio::worker::{spawn, stop_pair, WorkerHandle};
use crate::virtio::{read_config_bytes, ActivateContext, ActivateError, VirtioDevice};

const QUEUE_SIZES: [u16; 1] = [QUEUE_SIZE];

pub struct Block {
    backend: Option<Box<dyn DiskBackend>>,
    capacity_sectors: u64,
    read_only: bool,
    serial: String,
    worker: Option<WorkerHandle<BlockHandler>>,
    counters: BlockCounters,
}

impl Block {
    pub fn new(backend: Box<dyn DiskBackend>, read_only: bool, serial: String) -> Self {
        let capacity_sectors = backend.size() / SECTOR;
        Block {
            backend: Some(backend),
            capacity_sectors,
            read_only,
            serial,
            worker: None,
            counters: Default::default(),
        }
    }

    /// Config space: capacity, size_max, seg_max, geometry (unused), blk_size.
    fn config(&self) -> [u8; 24] {
        let mut c = [0u8; 24];
        c[0..8].copy_from_slice(&self.capacity_sectors.to_le_bytes());
        c[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        c
    }

    pub fn counters(&self) -> BlockCounters {
        self.counters
    }

    fn stop_worker(&mut self) {
        let Some(w) = self.worker.take() else { return };
        match w.stop() {
            Some(h) => {
                self.counters = h.counters;
                self.backend = Some(h.backend);
            }
            None => log::warn!("block: worker ended without returning its disk"),
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        BLOCK_DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        let f = feature::SIZE_MAX | feature::SEG_MAX | feature::BLK_SIZE | feature::FLUSH;
        if self.read_only {
            f | feature::RO
        } else {
            f
        }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config(), offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        log::debug!("block: guest wrote config at {offset:#x}; ignored");
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let backend = self.backend.take().ok_or(ActivateError::AlreadyActive("block"))?;
        let (stop, theirs) = stop_pair()?;
        let handler = BlockHandler {
            mem: ctx.mem,
            queues: ctx.queues,
            queue_events: ctx.queue_events,
            interrupt: ctx.interrupt,
            backend,
            // A guest that did not accept RO is still refused every write.
            read_only: self.read_only,
            serial: self.serial.clone(),
            buf: Vec::new(),
            stop: theirs,
            stopped: false,
            counters: self.counters,
        };
        self.worker = Some(spawn("block", handler, stop)?);
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
    }

    fn supports_snapshot(&self) -> bool {
        true
    }

    /// A clone's disk is its own: the file (or a placeholder's emptiness) it was given,
    /// whose capacity the guest must read again.
    fn config_changes_on_restore(&self) -> bool {
        true
    }

    /// Requests are served whole on the handler thread, so once it has stopped none is
    /// half done: the queues go on from where they stand.
    fn quiesce(&mut self) -> Result<Option<Vec<virtio_queue::QueueState>>, DeviceSnapshotError> {
        let Some(w) = self.worker.take() else { return Ok(None) };
        let h = w.stop().ok_or(DeviceSnapshotError::WorkerLost("block"))?;
        self.counters = h.counters;
        self.backend = Some(h.backend);
        Ok(Some(h.queues.iter().map(|q| q.state()).collect()))
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.stop_worker();
    }
}
