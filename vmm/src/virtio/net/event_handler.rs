//! The net device's event-manager subscriber: queue notifications, tap readiness, stop.

use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{process_tx, NetBackend, NetCounters, RxState, RXQ, TXQ};
use crate::virtio::{Interrupt, INT_VRING};

const TAP: u32 = 2;
const STOP: u32 = 3;

pub struct NetHandler {
    pub mem: GuestMemoryMmap,
    pub queues: Vec<Queue>,
    pub queue_events: Vec<EventFd>,
    pub interrupt: Arc<Interrupt>,
    pub backend: Box<dyn NetBackend>,
    pub rx: RxState,
    pub stop: EventFd,
    pub stopped: bool,
    pub counters: NetCounters,
}

impl NetHandler {
    fn rx(&mut self) -> bool {
        self.rx.process(&mut self.queues[RXQ], &self.mem, self.backend.as_mut(), &mut self.counters)
    }
}

impl MutEventSubscriber for NetHandler {
    fn init(&mut self, ops: &mut EventOps) {
        for (i, e) in self.queue_events.iter().enumerate() {
            if let Err(err) = ops.add(Events::with_data(e, i as u32, EventSet::IN)) {
                log::warn!("net: cannot watch queue {i}: {err:?}");
            }
        }
        // Edge-triggered: when the guest has no buffers we stop reading, and resume on
        // its RX notification rather than spinning on a readable tap.
        let tap = Events::with_data_raw(self.backend.as_raw_fd(), TAP, EventSet::IN | EventSet::EDGE_TRIGGERED);
        if let Err(err) = ops.add(tap) {
            log::warn!("net: cannot watch the tap: {err:?}");
        }
        if let Err(err) = ops.add(Events::with_data(&self.stop, STOP, EventSet::IN)) {
            log::warn!("net: cannot watch stop event: {err:?}");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let source = events.data();
        if let Some(e) = self.queue_events.get(source as usize) {
            let _ = e.read();
        }
        let irq = match source {
            s if s as usize == RXQ || s == TAP => self.rx(),
            s if s as usize == TXQ => {
                process_tx(&mut self.queues[TXQ], &self.mem, self.backend.as_mut(), &mut self.counters)
            }
            STOP => {
                let _ = self.stop.read();
                self.stopped = true;
                false
            }
            _ => false,
        };
        if irq {
            if let Err(e) = self.interrupt.trigger(INT_VRING) {
                log::warn!("net: cannot raise interrupt: {e}");
            }
        }
    }
}

impl crate::virtio::worker::Worker for NetHandler {
    fn stopped(&self) -> bool {
        self.stopped
    }
}
