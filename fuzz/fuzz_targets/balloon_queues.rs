//! A hostile guest's balloon queues: inflate, deflate and free page reports of any
//! shape, discarded for real from the mock guest memory (rings included, as a guest
//! may report them); nothing panics and every report that is not RAM is refused.
#![no_main]

use isola_vmm::virtio::balloon::{process_deflate, process_inflate, process_reporting, BalloonCounters, MemoryDiscard};
use libfuzzer_sys::fuzz_target;

#[path = "common_queue.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mem = common::memory();
    let mut c = BalloonCounters::default();
    let (_m, mut q) = common::queue_from(&mem, 0, data);
    process_reporting(&mut q, &mem, &mut MemoryDiscard, &mut c);
    let (_m, mut q) = common::queue_from(&mem, 0, data);
    process_inflate(&mut q, &mem, &mut MemoryDiscard, &mut c);
    let (_m, mut q) = common::queue_from(&mem, 0, data);
    process_deflate(&mut q, &mem, &mut c);
    assert!(c.reported_bytes <= (common::MEM as u64) * common::QLEN as u64, "more reported than could exist");
});
