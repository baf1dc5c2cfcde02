//! A hostile guest's vsock TX and RX queues: chains of any shape and content are
//! parsed or refused, never panic, and used entries never exceed what was offered.
#![no_main]

use isola_vmm::virtio::vsock::test_backend::{OnSend, ScriptedBackend};
use isola_vmm::virtio::vsock::{process_rx, process_tx, Counters};
use libfuzzer_sys::fuzz_target;

#[path = "common_queue.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mem = common::memory();
    let (half_a, half_b) = data.split_at(data.len() / 2);
    let (_tx_mock, mut txq) = common::queue_from(&mem, 0, half_a);
    let (_rx_mock, mut rxq) = common::queue_from(&mem, 0x4_0000, half_b);
    // Every packet is answered, at most 64 at a time.
    let mut backend = ScriptedBackend { on_send: OnSend::Echo { max: 64 }, ..Default::default() };
    let mut counters = Counters::default();
    process_tx(&mut txq, &mem, 3, &mut backend, &mut counters);
    process_rx(&mut rxq, &mem, &mut backend, &mut counters);
    assert!(counters.tx_packets + counters.malformed <= u64::from(common::QLEN) * 2);
});
