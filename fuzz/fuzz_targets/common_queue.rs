// Shared by the queue targets: a split queue on mock guest memory whose descriptor
// table, available ring and buffers are all whatever the input says, as a hostile
// guest driver would write them.

use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const QLEN: u16 = 16;
pub const MEM: usize = 1 << 20;

pub fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).expect("guest memory")
}

/// A queue at `base` with `QLEN` descriptors and an available ring taken from `input`;
/// the rest of the input is copied to guest memory from 0x8_0000 on.
pub fn queue_from<'a>(mem: &'a GuestMemoryMmap, base: u64, input: &[u8]) -> (MockSplitQueue<'a, GuestMemoryMmap>, Queue) {
    let m = MockSplitQueue::create(mem, GuestAddress(base), QLEN);
    let mut chunks = input.chunks_exact(16);
    for i in 0..QLEN {
        let Some(c) = chunks.next() else { break };
        let addr = u64::from_le_bytes(c[0..8].try_into().unwrap_or([0; 8])) % (MEM as u64 + 0x1000);
        let len = u32::from_le_bytes(c[8..12].try_into().unwrap_or([0; 4])) % (70 * 1024);
        let flags = u16::from_le_bytes([c[12], c[13]]) & 0x7;
        let next = u16::from_le_bytes([c[14], c[15]]) % (QLEN + 2);
        let _ = m.desc_table().store(i, RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next)));
    }
    let rest = chunks.remainder();
    let heads = rest.first().copied().unwrap_or(1) as u16 % (QLEN + 1);
    for i in 0..heads {
        let head = rest.get(1 + i as usize).copied().unwrap_or(0) as u16 % (QLEN + 1);
        let _ = m.avail().ring().ref_at(i as usize).map(|r| r.store(head.into()));
    }
    let _ = m.avail().idx().store(heads.into());
    let payload = input.get(16 * QLEN as usize..).unwrap_or(&[]);
    let _ = mem.write_slice(&payload[..payload.len().min(MEM - 0x8_0000)], GuestAddress(0x8_0000));
    let q = m.create_queue().expect("queue");
    (m, q)
}
