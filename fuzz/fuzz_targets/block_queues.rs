//! A hostile guest's block queue: chains of any shape, headers of any type and sector,
//! on a read-write and a read-only disk; every chain is answered or dropped, nothing
//! panics, and a read-only disk is never written.
#![no_main]

use isola_vmm::virtio::block::{process_queue, BlockCounters, Disk, MemDisk};
use libfuzzer_sys::fuzz_target;

#[path = "common_queue.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mem = common::memory();
    for read_only in [false, true] {
        let (_mock, mut q) = common::queue_from(&mem, 0, data);
        let mut disk = MemDisk { bytes: vec![0x5a; 64 << 10], ..Default::default() };
        let mut buf = Vec::new();
        let mut c = BlockCounters::default();
        let mut d = Disk { backend: &mut disk, read_only, serial: "fuzz", buf: &mut buf };
        process_queue(&mut q, &mem, &mut d, &mut c);
        assert!(!(read_only && disk.writes > 0), "a read-only disk was written");
    }
});
