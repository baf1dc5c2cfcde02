//! A pretend guest driver for the vsock queues: writes packets into mock guest memory
//! as a Linux driver would (both layouts) and reads back what the device produced.

use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::packet::HDR_LEN;
use super::{process_rx, process_tx, Counters, Header, Packet, VsockBackend, HOST_CID, TYPE_STREAM};

const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;
const QLEN: u16 = 256;

#[derive(Clone, Copy)]
pub enum Layout {
    /// Header and payload in separate descriptors (Linux < 6.2).
    Split,
    /// Header and payload in one descriptor (Linux >= 6.2).
    Single,
}

pub struct Driver {
    pub mem: &'static GuestMemoryMmap,
    rxm: MockSplitQueue<'static, GuestMemoryMmap>,
    txm: MockSplitQueue<'static, GuestMemoryMmap>,
    pub rxq: Queue,
    pub txq: Queue,
    pub counters: Counters,
    pub cid: u64,
    next_rx_desc: u16,
    next_tx_desc: u16,
    rx_used_seen: u16,
    next_buf: u64,
    rx_bufs: std::collections::HashMap<u32, u64>,
}

impl Driver {
    pub fn new(cid: u64) -> Self {
        // Leaked so the mock queues can borrow it for the test's lifetime.
        let mem: &'static GuestMemoryMmap =
            Box::leak(Box::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("guest memory")));
        let rxm = MockSplitQueue::create(mem, GuestAddress(0), QLEN);
        let txm = MockSplitQueue::create(mem, GuestAddress(0x10000), QLEN);
        let rxq = rxm.create_queue().expect("rx queue");
        let txq = txm.create_queue().expect("tx queue");
        Self {
            mem,
            rxm,
            txm,
            rxq,
            txq,
            counters: Counters::default(),
            cid,
            next_rx_desc: 0,
            next_tx_desc: 0,
            rx_used_seen: 0,
            next_buf: 0x10_0000,
            rx_bufs: Default::default(),
        }
    }

    fn alloc(&mut self, len: usize) -> u64 {
        let a = self.next_buf;
        self.next_buf += (len as u64 + 15) & !15;
        a
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
        let mut descs = Vec::new();
        for (i, (bytes, writable)) in bufs.iter().enumerate() {
            let addr = self.alloc(bytes.len().max(1));
            self.mem.write_slice(bytes, GuestAddress(addr)).expect("write");
            let mut flags = if *writable { VRING_DESC_F_WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= VRING_DESC_F_NEXT;
            }
            let idx = self.next_tx_desc + i as u16;
            descs.push(RawDescriptor::from(SplitDescriptor::new(addr, bytes.len() as u32, flags, idx + 1)));
        }
        self.txm.add_desc_chains(&descs, self.next_tx_desc).expect("add tx chain");
        self.next_tx_desc += descs.len() as u16;
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
        process_tx(&mut self.txq, self.mem, self.cid, backend, &mut self.counters)
    }

    /// Offers `count` device-writable RX buffers of `size` bytes each.
    pub fn post_rx(&mut self, count: usize, size: u32) {
        for _ in 0..count {
            let addr = self.alloc(size as usize);
            let d = RawDescriptor::from(SplitDescriptor::new(addr, size, VRING_DESC_F_WRITE, 0));
            self.rxm.add_desc_chains(&[d], self.next_rx_desc).expect("add rx chain");
            self.rx_bufs.insert(u32::from(self.next_rx_desc), addr);
            self.next_rx_desc += 1;
        }
    }

    /// Lets the device fill RX buffers, then parses every newly used one.
    /// A used length of 0 comes back as `None` (the device rejected the buffer).
    pub fn recv(&mut self, backend: &mut dyn VsockBackend) -> Vec<Option<Packet>> {
        process_rx(&mut self.rxq, self.mem, backend, &mut self.counters);
        let mut out = Vec::new();
        let used_idx = self.rxm.used().idx().load();
        while self.rx_used_seen != used_idx {
            let slot = usize::from(self.rx_used_seen % QLEN);
            let e = self.rxm.used().ring().ref_at(slot).expect("used slot").load();
            self.rx_used_seen = self.rx_used_seen.wrapping_add(1);
            let addr = self.rx_bufs[&e.id()];
            if e.len() == 0 {
                out.push(None);
                continue;
            }
            let mut hb = [0u8; HDR_LEN];
            self.mem.read_slice(&mut hb, GuestAddress(addr)).expect("read hdr");
            let hdr = Header::parse(&hb);
            let mut data = vec![0u8; hdr.len as usize];
            self.mem.read_slice(&mut data, GuestAddress(addr + HDR_LEN as u64)).expect("read data");
            assert_eq!(e.len() as usize, HDR_LEN + data.len(), "used length covers header and payload");
            out.push(Some(Packet { hdr, data }));
        }
        out
    }

    /// Used TX entries so far.
    pub fn tx_used(&self) -> u16 {
        self.txm.used().idx().load()
    }
}

/// A backend that plays back packets and records what it was sent; it can also claim
/// to have data and then have none, as a racing socket would.
#[derive(Default)]
pub struct ScriptedBackend {
    pub to_guest: std::collections::VecDeque<Packet>,
    pub from_guest: Vec<Packet>,
    pub phantom_pending: usize,
    pub event: Option<vmm_sys_util::eventfd::EventFd>,
}

impl VsockBackend for ScriptedBackend {
    fn send_pkt(&mut self, pkt: Packet) {
        self.from_guest.push(pkt);
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
