//! A hostile guest's vsock TX and RX queues: chains of any shape and content are
//! parsed or refused, never panic, and used entries never exceed what was offered.
#![no_main]

use std::os::fd::RawFd;

use isola_vmm::virtio::vsock::{process_rx, process_tx, Counters, Packet, VsockBackend};
use libfuzzer_sys::fuzz_target;

#[path = "common_queue.rs"]
mod common;

/// Takes every packet and answers each with a reply of the same size.
#[derive(Default)]
struct Echo {
    pending: Vec<Packet>,
}

impl VsockBackend for Echo {
    fn send_pkt(&mut self, pkt: Packet) {
        if self.pending.len() < 64 {
            let mut reply = Packet::to_guest(3, pkt.hdr.dst_port, pkt.hdr.src_port, pkt.hdr.op);
            reply.data = pkt.data;
            self.pending.push(reply);
        }
    }
    fn recv_pkt(&mut self, max_payload: usize) -> Option<Packet> {
        let mut p = self.pending.pop()?;
        p.data.truncate(max_payload);
        Some(p)
    }
    fn has_pending_rx(&self) -> bool {
        !self.pending.is_empty()
    }
    fn as_raw_fd(&self) -> RawFd {
        -1
    }
    fn process_events(&mut self) {}
    fn reset(&mut self) {
        self.pending.clear();
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = common::memory();
    let (half_a, half_b) = data.split_at(data.len() / 2);
    let (_tx_mock, mut txq) = common::queue_from(&mem, 0, half_a);
    let (_rx_mock, mut rxq) = common::queue_from(&mem, 0x4_0000, half_b);
    let mut backend = Echo::default();
    let mut counters = Counters::default();
    process_tx(&mut txq, &mem, 3, &mut backend, &mut counters);
    process_rx(&mut rxq, &mem, &mut backend, &mut counters);
    assert!(counters.tx_packets + counters.malformed <= u64::from(common::QLEN) * 2);
});
