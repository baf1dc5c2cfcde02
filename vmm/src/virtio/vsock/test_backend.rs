//! A vsock backend for tests, fuzz targets and benches: plays back packets and records,
//! drops or echoes what the guest sends (behind the `test-utils` feature outside tests).

use super::{Packet, VsockBackend};

/// A backend that plays back packets and records what it was sent; it can also claim
/// to have data and then have none, as a racing socket would.
#[derive(Default)]
pub struct ScriptedBackend {
    pub to_guest: std::collections::VecDeque<Packet>,
    pub from_guest: Vec<Packet>,
    pub phantom_pending: usize,
    pub event: Option<vmm_sys_util::eventfd::EventFd>,
    pub on_send: OnSend,
}

/// What the backend does with a packet the guest sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnSend {
    /// Keeps it in `from_guest` (tests look at it).
    #[default]
    Record,
    /// Drops it (benches: memory stays flat over any number of rounds).
    Drop,
    /// Answers it with a packet of the same payload from the host, while fewer than
    /// `max` answers wait (fuzzing: bounded however much the guest sends).
    Echo { max: usize },
}

impl VsockBackend for ScriptedBackend {
    fn send_pkt(&mut self, pkt: Packet) {
        match self.on_send {
            OnSend::Record => self.from_guest.push(pkt),
            OnSend::Drop => drop(pkt),
            OnSend::Echo { max } if self.to_guest.len() < max => {
                let mut reply = Packet::to_guest(pkt.hdr.src_cid, pkt.hdr.dst_port, pkt.hdr.src_port, pkt.hdr.op);
                reply.data = pkt.data;
                self.to_guest.push_back(reply);
            }
            OnSend::Echo { .. } => {}
        }
    }
    fn recv_pkt(&mut self, max_payload: usize) -> Option<Packet> {
        if self.phantom_pending > 0 {
            self.phantom_pending -= 1;
            return None;
        }
        let mut p = self.to_guest.pop_front()?;
        p.data.truncate(max_payload);
        Some(p)
    }
    fn has_pending_rx(&self) -> bool {
        self.phantom_pending > 0 || !self.to_guest.is_empty()
    }
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.event.as_ref().map_or(-1, |e| e.as_raw_fd())
    }
    fn process_events(&mut self) {}
    fn reset(&mut self) {
        self.to_guest.clear();
    }
}
