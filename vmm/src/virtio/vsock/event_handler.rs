//! The device's event-manager subscriber: queue notifications, backend readiness, stop.

use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::queues::{push_event, EVENT_TRANSPORT_RESET};
use super::{process_rx, process_tx, Counters, VsockBackend, EVQ, RXQ, TXQ};
use crate::virtio::{Interrupt, INT_VRING};

const BACKEND: u32 = 3;
const STOP: u32 = 4;

pub struct VsockHandler {
    pub mem: GuestMemoryMmap,
    pub queues: Vec<Queue>,
    pub queue_events: Vec<EventFd>,
    pub interrupt: Arc<Interrupt>,
    pub backend: Box<dyn VsockBackend>,
    pub guest_cid: u64,
    pub stop: EventFd,
    pub stopped: bool,
    pub counters: Counters,
    /// A TRANSPORT_RESET event still to deliver (restored from a snapshot: the
    /// guest's connections are gone and its CID may have changed).
    pub pending_reset: bool,
}

impl VsockHandler {
    fn signal(&self, needed: bool) {
        if needed {
            if let Err(e) = self.interrupt.trigger(INT_VRING) {
                log::warn!("vsock: cannot raise interrupt: {e}");
            }
        }
    }

    fn rx(&mut self) -> bool {
        process_rx(&mut self.queues[RXQ], &self.mem, self.backend.as_mut(), &mut self.counters)
    }

    /// Delivers the pending reset event once the guest has posted an event buffer.
    fn event(&mut self) -> bool {
        if !self.pending_reset {
            return false;
        }
        match push_event(&mut self.queues[EVQ], &self.mem, EVENT_TRANSPORT_RESET) {
            Some(irq) => {
                self.pending_reset = false;
                irq
            }
            None => false,
        }
    }

    fn tx(&mut self) -> bool {
        let cid = self.guest_cid;
        process_tx(&mut self.queues[TXQ], &self.mem, cid, self.backend.as_mut(), &mut self.counters)
    }
}

impl MutEventSubscriber for VsockHandler {
    fn init(&mut self, ops: &mut EventOps) {
        for (i, e) in self.queue_events.iter().enumerate() {
            if let Err(err) = ops.add(Events::with_data(e, i as u32, EventSet::IN)) {
                log::warn!("vsock: cannot watch queue {i}: {err:?}");
            }
        }
        let fd = self.backend.as_raw_fd();
        if let Err(err) = ops.add(Events::with_data_raw(fd, BACKEND, EventSet::IN)) {
            log::warn!("vsock: cannot watch backend: {err:?}");
        }
        if let Err(err) = ops.add(Events::with_data(&self.stop, STOP, EventSet::IN)) {
            log::warn!("vsock: cannot watch stop event: {err:?}");
        }
        let irq = self.event();
        self.signal(irq);
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let source = events.data();
        if let Some(e) = self.queue_events.get(source as usize) {
            let _ = e.read();
        }
        let needs_irq = match source {
            s if s as usize == RXQ => self.rx(),
            s if s as usize == TXQ => {
                // Answers (RESPONSE, RST, credit) become pending on the way through.
                let t = self.tx();
                self.rx() || t
            }
            s if s as usize == EVQ => self.event(),
            BACKEND => {
                self.backend.process_events();
                self.rx()
            }
            STOP => {
                let _ = self.stop.read();
                self.stopped = true;
                false
            }
            _ => false,
        };
        self.signal(needs_irq);
    }
}

impl crate::virtio::worker::Worker for VsockHandler {
    fn stopped(&self) -> bool {
        self.stopped
    }
}
