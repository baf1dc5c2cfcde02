//! A pretend guest driver for the vsock queues: writes packets into mock guest memory
//! as a Linux driver would (both layouts) and reads back what the device produced.

use vm_memory::GuestMemoryMmap;

use crate::virtio::mock_driver::Guest;

use super::packet::HDR_LEN;
pub use super::test_backend::ScriptedBackend;
use super::{process_rx, process_tx, Counters, Header, Packet, VsockBackend, HOST_CID, TYPE_STREAM};

#[derive(Clone, Copy)]
pub enum Layout {
    /// Header and payload in separate descriptors (Linux < 6.2).
    Split,
    /// Header and payload in one descriptor (Linux >= 6.2).
    Single,
}

pub struct Driver {
    g: Guest,
    pub mem: &'static GuestMemoryMmap,
    pub counters: Counters,
    pub cid: u64,
}

impl Driver {
    pub fn new(cid: u64) -> Self {
        let g = Guest::new();
        Self { mem: g.mem, g, counters: Counters::default(), cid }
    }

    /// A guest→host packet header on connection (guest port `src`, host port `dst`).
    pub fn pkt(&self, src: u32, dst: u32, op: u16, data: &[u8]) -> Packet {
        Packet {
            hdr: Header {
                src_cid: self.cid,
                dst_cid: HOST_CID,
                src_port: src,
                dst_port: dst,
                len: data.len() as u32,
                type_: TYPE_STREAM,
                op,
                buf_alloc: 64 * 1024,
                ..Header::default()
            },
            data: data.to_vec(),
        }
    }

    /// Places raw (bytes, device-writable) buffers as one chain on the TX queue.
    pub fn queue_tx_raw(&mut self, bufs: &[(&[u8], bool)]) {
        self.g.send_raw(bufs);
    }

    /// Sends `p` (its header `len` as given) and lets the device process the TX queue.
    pub fn send(&mut self, backend: &mut dyn VsockBackend, p: &Packet, layout: Layout) -> bool {
        let hdr = p.hdr.to_bytes();
        match layout {
            Layout::Split if p.data.is_empty() => self.queue_tx_raw(&[(&hdr, false)]),
            Layout::Split => self.queue_tx_raw(&[(&hdr, false), (&p.data, false)]),
            Layout::Single => {
                let mut all = hdr.to_vec();
                all.extend_from_slice(&p.data);
                self.queue_tx_raw(&[(&all, false)]);
            }
        }
        self.process_tx(backend)
    }

    pub fn process_tx(&mut self, backend: &mut dyn VsockBackend) -> bool {
        process_tx(&mut self.g.txq, self.mem, self.cid, backend, &mut self.counters)
    }

    /// Offers `count` device-writable RX buffers of `size` bytes each.
    pub fn post_rx(&mut self, count: usize, size: u32) {
        self.g.post_rx(count, size);
    }

    /// Lets the device fill RX buffers, then parses every newly used one.
    /// A used length of 0 comes back as `None` (the device rejected the buffer).
    pub fn recv(&mut self, backend: &mut dyn VsockBackend) -> Vec<Option<Packet>> {
        process_rx(&mut self.g.rxq, self.mem, backend, &mut self.counters);
        self.g
            .received()
            .into_iter()
            .map(|b| {
                if b.is_empty() {
                    return None;
                }
                let hb: [u8; HDR_LEN] = b[..HDR_LEN].try_into().expect("header");
                let hdr = Header::parse(&hb);
                let data = b[HDR_LEN..].to_vec();
                assert_eq!(data.len(), hdr.len as usize, "used length covers header and payload");
                Some(Packet { hdr, data })
            })
            .collect()
    }

    /// Used TX entries so far.
    pub fn tx_used(&self) -> u16 {
        self.g.tx_used()
    }
}

/// Lets the muxer handle socket readiness until it has something for the guest (or 2 s pass).
pub fn pump(m: &mut super::UnixMuxer) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < until {
        let mut pfd = libc::pollfd { fd: m.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: pfd is a valid pollfd array of length 1 for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, 10) };
        m.process_events();
        if m.has_pending_rx() {
            return;
        }
    }
}
