//! The block device's event-manager subscriber: queue notifications and stop.

use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::queues::Disk;
use super::{process_queue, BlockCounters, DiskBackend};
use crate::virtio::{Interrupt, INT_VRING};

const STOP: u32 = 1;

pub struct BlockHandler {
    pub mem: GuestMemoryMmap,
    pub queues: Vec<Queue>,
    pub queue_events: Vec<EventFd>,
    pub interrupt: Arc<Interrupt>,
    pub backend: Box<dyn DiskBackend>,
    pub read_only: bool,
    pub serial: String,
    pub buf: Vec<u8>,
    pub stop: EventFd,
    pub stopped: bool,
    pub counters: BlockCounters,
}

impl MutEventSubscriber for BlockHandler {
    fn init(&mut self, ops: &mut EventOps) {
        if let Some(e) = self.queue_events.first() {
            if let Err(err) = ops.add(Events::with_data(e, 0, EventSet::IN)) {
                log::warn!("block: cannot watch its queue: {err:?}");
            }
        }
        if let Err(err) = ops.add(Events::with_data(&self.stop, STOP, EventSet::IN)) {
            log::warn!("block: cannot watch stop event: {err:?}");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.data() == STOP {
            let _ = self.stop.read();
            self.stopped = true;
            return;
        }
        if let Some(e) = self.queue_events.first() {
            let _ = e.read();
        }
        let Some(queue) = self.queues.first_mut() else { return };
        let mut disk = Disk {
            backend: self.backend.as_mut(),
            read_only: self.read_only,
            serial: &self.serial,
            buf: &mut self.buf,
        };
        if process_queue(queue, &self.mem, &mut disk, &mut self.counters) {
            if let Err(e) = self.interrupt.trigger(INT_VRING) {
                log::warn!("block: cannot raise interrupt: {e}");
            }
        }
    }
}

impl crate::virtio::worker::Worker for BlockHandler {
    fn stopped(&self) -> bool {
        self.stopped
    }
}
