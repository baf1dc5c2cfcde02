//! Frames between the virtqueues and a backend, as plain functions that say whether
//! the guest needs an interrupt.

use std::io::{ErrorKind, Read, Write};

use virtio_queue::{Queue, QueueOwnedT, QueueT, Reader, Writer};
use vm_memory::GuestMemoryMmap;

use super::{NetBackend, MAX_FRAME, VNET_HDR_LEN};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetCounters {
    pub tx_frames: u64,
    pub rx_frames: u64,
    pub tx_malformed: u64,
    /// Frames dropped on receive (too big for the guest's buffers, or backend errors).
    pub rx_dropped: u64,
}

/// Sends every frame the guest queued. Malformed chains are counted and returned.
pub fn process_tx(queue: &mut Queue, mem: &GuestMemoryMmap, backend: &mut dyn NetBackend, c: &mut NetCounters) -> bool {
    let mut used = false;
    let mut frame = Vec::with_capacity(MAX_FRAME);
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        frame.clear();
        let log = crate::virtio::worth_logging(c.tx_malformed + 1);
        let ok = match Reader::new(mem, chain) {
            Ok(mut r) if (VNET_HDR_LEN..=MAX_FRAME).contains(&r.available_bytes()) => r.read_to_end(&mut frame).is_ok(),
            Ok(r) => {
                if log {
                    log::warn!(
                        "net: tx chain {head} of {} bytes dropped ({} so far)",
                        r.available_bytes(),
                        c.tx_malformed + 1
                    );
                }
                false
            }
            Err(e) => {
                if log {
                    log::warn!("net: tx chain {head}: {e} ({} so far)", c.tx_malformed + 1);
                }
                false
            }
        };
        if ok {
            match backend.write_frame(&frame) {
                Ok(()) => c.tx_frames += 1,
                Err(e) => log::debug!("net: tap write: {e}"),
            }
        } else {
            c.tx_malformed += 1;
        }
        if queue.add_used(mem, head, 0).is_err() {
            break;
        }
        used = true;
    }
    used
}

/// Receive side: a frame read from the backend waits here until the guest has room.
pub struct RxState {
    frame: Vec<u8>,
    len: usize,
    pub mergeable: bool,
}

impl Default for RxState {
    fn default() -> Self {
        Self { frame: vec![0; MAX_FRAME], len: 0, mergeable: false }
    }
}

impl RxState {
    pub fn pending(&self) -> bool {
        self.len > 0
    }

    /// Moves frames from the backend into RX buffers until either runs out.
    pub fn process(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
        backend: &mut dyn NetBackend,
        c: &mut NetCounters,
    ) -> bool {
        let mut used = false;
        loop {
            if self.len == 0 {
                match backend.read_frame(&mut self.frame) {
                    Ok(n) if n >= VNET_HDR_LEN => self.len = n,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return used,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::warn!("net: tap read: {e}");
                        c.rx_dropped += 1;
                        return used;
                    }
                }
            }
            if self.deliver_pending(queue, mem, c).is_none() {
                return used;
            }
            used = true;
        }
    }

    /// Just the pending frame, no backend reads; whether a buffer was used.
    pub fn flush(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap, c: &mut NetCounters) -> bool {
        self.len > 0 && self.deliver_pending(queue, mem, c).is_some()
    }

    /// Delivers (or drops, counted) the pending frame; `None` when the guest has no room
    /// and the frame stays pending.
    fn deliver_pending(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap, c: &mut NetCounters) -> Option<()> {
        match self.deliver(queue, mem) {
            Delivered::Yes => c.rx_frames += 1,
            Delivered::Dropped => c.rx_dropped += 1,
            Delivered::NoRoom => return None,
        }
        self.len = 0;
        Some(())
    }

    fn deliver(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> Delivered {
        // Take chains until the frame fits (one chain unless buffers are mergeable).
        let mut chains = Vec::new();
        let mut room = 0usize;
        let mut returned_bad = false;
        while room < self.len {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                if returned_bad {
                    // A bad chain between them was returned already, so the ring cannot
                    // be rewound over it: the good ones go back empty (the guest posts
                    // them again) and the frame waits for room.
                    for (head, _) in &chains {
                        let _ = queue.add_used(mem, *head, 0);
                    }
                } else {
                    for _ in 0..chains.len() {
                        queue.go_to_previous_position();
                    }
                }
                return Delivered::NoRoom;
            };
            let head = chain.head_index();
            let w = match Writer::new(mem, chain) {
                Ok(w) => w,
                Err(_) => {
                    let _ = queue.add_used(mem, head, 0);
                    returned_bad = true;
                    continue;
                }
            };
            room += w.available_bytes();
            chains.push((head, w));
            if !self.mergeable {
                break;
            }
        }
        if room < self.len || chains.first().is_some_and(|(_, w)| w.available_bytes() < VNET_HDR_LEN) {
            // Without mergeable buffers the guest's buffer must hold the whole frame.
            for (head, _) in &chains {
                let _ = queue.add_used(mem, *head, 0);
            }
            return Delivered::Dropped;
        }
        let n = chains.len() as u16;
        self.frame[10..12].copy_from_slice(&n.to_le_bytes());
        let mut off = 0;
        for (head, mut w) in chains {
            let take = w.available_bytes().min(self.len - off);
            let wrote = w.write_all(&self.frame[off..off + take]).map(|_| take).unwrap_or(0);
            off += take;
            let _ = queue.add_used(mem, head, wrote as u32);
        }
        Delivered::Yes
    }
}

enum Delivered {
    Yes,
    NoRoom,
    Dropped,
}
