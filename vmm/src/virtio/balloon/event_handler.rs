//! The balloon's event-manager subscriber: one event per queue, and stop.

use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{
    process_deflate, process_inflate, process_reporting, queue, BalloonControl, BalloonCounters, MemoryDiscard,
};
use crate::virtio::{Interrupt, INT_VRING};

const STOP: u32 = u32::MAX;

pub struct BalloonHandler {
    pub mem: GuestMemoryMmap,
    /// How many of the queues the driver set up ([`super::queues_in_use`]).
    pub in_use: usize,
    /// Inflate, deflate and reporting.
    pub queues: Vec<Queue>,
    pub queue_events: Vec<EventFd>,
    pub interrupt: Arc<Interrupt>,
    pub discard: MemoryDiscard,
    pub stop: EventFd,
    pub stopped: bool,
    pub counters: BalloonCounters,
    pub control: Arc<BalloonControl>,
}

impl MutEventSubscriber for BalloonHandler {
    fn init(&mut self, ops: &mut EventOps) {
        for (i, e) in self.queue_events.iter().enumerate().take(self.in_use) {
            if let Err(err) = ops.add(Events::with_data(e, i as u32, EventSet::IN)) {
                log::warn!("balloon: cannot watch queue {i}: {err:?}");
            }
        }
        if let Err(err) = ops.add(Events::with_data(&self.stop, STOP, EventSet::IN)) {
            log::warn!("balloon: cannot watch stop event: {err:?}");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let index = events.data();
        if index == STOP {
            let _ = self.stop.read();
            self.stopped = true;
            return;
        }
        let index = index as usize;
        if let Some(e) = self.queue_events.get(index) {
            let _ = e.read();
        }
        if index >= self.in_use {
            return;
        }
        let Some(q) = self.queues.get_mut(index) else { return };
        let c = &mut self.counters;
        let needs_interrupt = match index {
            queue::INFLATE => process_inflate(q, &self.mem, &mut self.discard, c),
            queue::DEFLATE => process_deflate(q, &self.mem, c),
            queue::REPORTING => process_reporting(q, &self.mem, &mut self.discard, c),
            _ => false,
        };
        self.control.publish(*c);
        if needs_interrupt {
            if let Err(e) = self.interrupt.trigger(INT_VRING) {
                log::warn!("balloon: cannot raise interrupt: {e}");
            }
        }
    }
}

impl crate::virtio::worker::Worker for BalloonHandler {
    fn stopped(&self) -> bool {
        self.stopped
    }
}
