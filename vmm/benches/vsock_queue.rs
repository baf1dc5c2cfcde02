//! Vsock queue processing on mock guest memory: 64 RW packets of 4 KiB through the
//! TX queue into a sink, and 64 packets from a source into RX buffers.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use isola_vmm::virtio::vsock::test_backend::{OnSend, ScriptedBackend};
use isola_vmm::virtio::vsock::{op, process_rx, process_tx, Counters, Header, Packet, HOST_CID};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const N: u16 = 64;
const PAYLOAD: usize = 4096;

fn rw(cid: u64) -> Header {
    Header {
        src_cid: cid,
        dst_cid: HOST_CID,
        src_port: 1,
        dst_port: 2,
        len: PAYLOAD as u32,
        type_: 1,
        op: op::RW,
        ..Header::default()
    }
}

/// A TX queue holding N single-descriptor packets (header + payload).
fn tx_queue(mem: &GuestMemoryMmap) -> Queue {
    let m = MockSplitQueue::create(mem, GuestAddress(0), 256);
    let mut descs = Vec::new();
    for i in 0..N {
        let addr = 0x10_0000 + u64::from(i) * 0x2000;
        let mut bytes = rw(3).to_bytes().to_vec();
        bytes.resize(44 + PAYLOAD, 7);
        mem.write_slice(&bytes, GuestAddress(addr)).expect("write");
        descs.push(RawDescriptor::from(SplitDescriptor::new(addr, bytes.len() as u32, 0, 0)));
    }
    m.add_desc_chains(&descs, 0).expect("chains");
    m.create_queue().expect("queue")
}

fn rx_queue(mem: &GuestMemoryMmap) -> Queue {
    let m = MockSplitQueue::create(mem, GuestAddress(0x8000), 256);
    let descs: Vec<RawDescriptor> = (0..N)
        .map(|i| {
            RawDescriptor::from(SplitDescriptor::new(0x40_0000 + u64::from(i) * 0x2000, 44 + PAYLOAD as u32, 2, 0))
        })
        .collect();
    m.add_desc_chains(&descs, 0).expect("chains");
    m.create_queue().expect("queue")
}

fn queues(c: &mut Criterion) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("memory");
    c.bench_function("vsock tx: 64 x 4 KiB packets", |b| {
        b.iter_batched(
            || tx_queue(&mem),
            |mut q| {
                let mut sink = ScriptedBackend { on_send: OnSend::Drop, ..Default::default() };
                process_tx(&mut q, &mem, 3, &mut sink, &mut Counters::default())
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("vsock rx: 64 x 4 KiB packets", |b| {
        b.iter_batched(
            || {
                let pkt = Packet { hdr: rw(HOST_CID), data: vec![9; PAYLOAD] };
                let to_guest = vec![pkt; usize::from(N)].into();
                (rx_queue(&mem), ScriptedBackend { to_guest, ..Default::default() })
            },
            |(mut q, mut src)| process_rx(&mut q, &mem, &mut src, &mut Counters::default()),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, queues);
criterion_main!(benches);
