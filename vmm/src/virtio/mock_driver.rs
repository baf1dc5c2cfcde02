//! Pretend guest drivers on mock guest memory, shared by the device tests: one with an
//! RX and a TX queue (vsock, net) and net's backend double; one that queues chains of
//! buffers on a single queue (block, balloon).

use std::collections::VecDeque;

use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::net::NetBackend;

const QLEN: u16 = 256;

pub struct Guest {
    pub mem: &'static GuestMemoryMmap,
    rxm: MockSplitQueue<'static, GuestMemoryMmap>,
    txm: MockSplitQueue<'static, GuestMemoryMmap>,
    pub rxq: Queue,
    pub txq: Queue,
    next_rx: u16,
    next_tx: u16,
    rx_seen: u16,
    next_buf: u64,
    rx_addr: std::collections::HashMap<u32, u64>,
}

impl Guest {
    pub fn new() -> Self {
        // Leaked so the mock queues can borrow it for the test's lifetime.
        let mem: &'static GuestMemoryMmap =
            Box::leak(Box::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 32 << 20)]).expect("memory")));
        let rxm = MockSplitQueue::create(mem, GuestAddress(0), QLEN);
        let txm = MockSplitQueue::create(mem, GuestAddress(0x10000), QLEN);
        let (rxq, txq) = (rxm.create_queue().expect("rx"), txm.create_queue().expect("tx"));
        Self {
            mem,
            rxm,
            txm,
            rxq,
            txq,
            next_rx: 0,
            next_tx: 0,
            rx_seen: 0,
            next_buf: 0x10_0000,
            rx_addr: Default::default(),
        }
    }

    fn alloc(&mut self, len: usize) -> u64 {
        let a = self.next_buf;
        self.next_buf += (len as u64 + 15) & !15;
        a
    }

    /// Queues one TX chain made of these buffers.
    pub fn send(&mut self, bufs: &[&[u8]]) {
        let raw: Vec<(&[u8], bool)> = bufs.iter().map(|b| (*b, false)).collect();
        self.send_raw(&raw);
    }

    /// Queues one TX chain of (bytes, device-writable) buffers, as a buggy or hostile
    /// driver might.
    pub fn send_raw(&mut self, bufs: &[(&[u8], bool)]) {
        let mut descs = Vec::new();
        for (i, (b, writable)) in bufs.iter().enumerate() {
            let addr = self.alloc(b.len().max(1));
            self.mem.write_slice(b, GuestAddress(addr)).expect("write");
            let mut flags = if i + 1 < bufs.len() { 1 } else { 0 };
            if *writable {
                flags |= 2;
            }
            descs.push(RawDescriptor::from(SplitDescriptor::new(
                addr,
                b.len() as u32,
                flags,
                self.next_tx + i as u16 + 1,
            )));
        }
        self.txm.add_desc_chains(&descs, self.next_tx).expect("tx chain");
        self.next_tx += descs.len() as u16;
    }

    pub fn post_rx(&mut self, count: usize, size: u32) {
        for _ in 0..count {
            let addr = self.alloc(size as usize);
            let d = RawDescriptor::from(SplitDescriptor::new(addr, size, 2, 0));
            self.rxm.add_desc_chains(&[d], self.next_rx).expect("rx chain");
            self.rx_addr.insert(u32::from(self.next_rx), addr);
            self.next_rx += 1;
        }
    }

    /// One RX chain whose buffer lies outside guest memory (a hostile or broken driver).
    pub fn post_rx_bad(&mut self) {
        let d = RawDescriptor::from(SplitDescriptor::new(0xffff_ff00_0000, 4096, 2, 0));
        self.rxm.add_desc_chains(&[d], self.next_rx).expect("rx chain");
        self.rx_addr.insert(u32::from(self.next_rx), 0xffff_ff00_0000);
        self.next_rx += 1;
    }

    /// Heads of the RX chains used since the last call to this or [`Guest::received`].
    pub fn rx_used_heads(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        let idx = self.rxm.used().idx().load();
        while self.rx_seen != idx {
            let e = self.rxm.used().ring().ref_at(usize::from(self.rx_seen % QLEN)).expect("slot").load();
            self.rx_seen = self.rx_seen.wrapping_add(1);
            out.push(e.id());
        }
        out
    }

    /// Used RX buffers since the last call: (bytes written).
    pub fn received(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let idx = self.rxm.used().idx().load();
        while self.rx_seen != idx {
            let e = self.rxm.used().ring().ref_at(usize::from(self.rx_seen % QLEN)).expect("slot").load();
            self.rx_seen = self.rx_seen.wrapping_add(1);
            let mut b = vec![0u8; e.len() as usize];
            self.mem.read_slice(&mut b, GuestAddress(self.rx_addr[&e.id()])).expect("read");
            out.push(b);
        }
        out
    }

    pub fn tx_used(&self) -> u16 {
        self.txm.used().idx().load()
    }
}

#[derive(Default)]
pub struct FakeTap {
    pub inbound: VecDeque<Vec<u8>>,
    pub outbound: Vec<Vec<u8>>,
}

impl NetBackend for FakeTap {
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let f = self.inbound.pop_front().ok_or(std::io::ErrorKind::WouldBlock)?;
        buf[..f.len()].copy_from_slice(&f);
        Ok(f.len())
    }
    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.outbound.push(frame.to_vec());
        Ok(())
    }
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        -1
    }
    fn set_offloads(&mut self, _: u64) -> std::io::Result<()> {
        Ok(())
    }
}

/// A frame with a zeroed 12-byte vnet header in front.
pub fn with_hdr(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; super::net::VNET_HDR_LEN];
    f.extend_from_slice(payload);
    f
}

const CHAIN_QLEN: u16 = 64;

/// One buffer of a chain: its bytes (or its length, for device-writable ones).
pub enum Buf {
    Out(Vec<u8>),
    In(u32),
    /// A device-writable buffer outside guest memory.
    Wild,
    /// A buffer the driver points at a given guest range (a page it reports, say),
    /// device-writable or not.
    At {
        addr: u64,
        len: u32,
        writable: bool,
    },
}

pub struct ChainDriver {
    pub mem: &'static GuestMemoryMmap,
    mock: MockSplitQueue<'static, GuestMemoryMmap>,
    pub queue: Queue,
    next: u16,
    next_buf: u64,
    /// Per chain head: the address and length of its writable buffers.
    writable: std::collections::HashMap<u16, Vec<(u64, u32)>>,
    seen: u16,
}

impl ChainDriver {
    pub fn new() -> Self {
        Self::on(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 32 << 20)]).expect("memory"))
    }

    /// A driver on `mem` (its rings and buffers in the first MiBs).
    pub fn on(mem: GuestMemoryMmap) -> Self {
        // Leaked so the mock queue can borrow it for the test's lifetime.
        let mem: &'static GuestMemoryMmap = Box::leak(Box::new(mem));
        let mock = MockSplitQueue::create(mem, GuestAddress(0), CHAIN_QLEN);
        let queue = mock.create_queue().expect("queue");
        ChainDriver { mem, mock, queue, next: 0, next_buf: 0x10_0000, writable: Default::default(), seen: 0 }
    }

    pub fn chain(&mut self, bufs: Vec<Buf>) -> u16 {
        let head = self.next;
        let mut descs = Vec::new();
        let mut w = Vec::new();
        let n = bufs.len();
        for (i, b) in bufs.into_iter().enumerate() {
            let next = if i + 1 < n { 1 } else { 0 };
            let idx = self.next + i as u16 + 1;
            let (addr, len, flags) = match b {
                Buf::Out(bytes) => {
                    let a = self.alloc(bytes.len());
                    self.mem.write_slice(&bytes, GuestAddress(a)).expect("write");
                    (a, bytes.len() as u32, next)
                }
                Buf::In(len) => {
                    let a = self.alloc(len as usize);
                    self.mem.write_slice(&vec![0xee; len as usize], GuestAddress(a)).expect("fill");
                    w.push((a, len));
                    (a, len, next | 2)
                }
                Buf::Wild => (0xffff_ff00_0000, 512, next | 2),
                Buf::At { addr, len, writable } => (addr, len, if writable { next | 2 } else { next }),
            };
            descs.push(RawDescriptor::from(SplitDescriptor::new(addr, len, flags, idx)));
        }
        self.mock.add_desc_chains(&descs, self.next).expect("chain");
        self.next += descs.len() as u16;
        self.writable.insert(head, w);
        head
    }

    /// Another queue over the same rings (for a device that takes its own).
    pub fn fresh_queue(&self) -> Queue {
        self.mock.create_queue().expect("queue")
    }

    fn alloc(&mut self, len: usize) -> u64 {
        let a = self.next_buf;
        self.next_buf += (len.max(1) as u64 + 15) & !15;
        a
    }

    /// Used entries since the last call: (head, len, its writable bytes joined).
    pub fn used(&mut self) -> Vec<(u16, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let idx = self.mock.used().idx().load();
        while self.seen != idx {
            let e = self.mock.used().ring().ref_at(usize::from(self.seen % CHAIN_QLEN)).expect("slot").load();
            self.seen = self.seen.wrapping_add(1);
            let head = e.id() as u16;
            let mut bytes = Vec::new();
            for (a, l) in &self.writable[&head] {
                let mut b = vec![0u8; *l as usize];
                self.mem.read_slice(&mut b, GuestAddress(*a)).expect("read");
                bytes.extend(b);
            }
            out.push((head, e.len(), bytes));
        }
        out
    }
}
