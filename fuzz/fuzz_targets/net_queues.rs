//! A hostile guest's net queues: TX chains of any shape are sent or dropped, RX buffers
//! of any shape are filled or refused; nothing panics.
#![no_main]

use std::os::fd::RawFd;

use isola_vmm::virtio::net::{process_tx, NetBackend, NetCounters, RxState};
use libfuzzer_sys::fuzz_target;

#[path = "common_queue.rs"]
mod common;

/// Swallows frames; offers the same frames back as received traffic.
struct Loop {
    frames: Vec<Vec<u8>>,
}

impl NetBackend for Loop {
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let f = self.frames.pop().ok_or(std::io::ErrorKind::WouldBlock)?;
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Ok(n)
    }
    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        if self.frames.len() < 64 {
            self.frames.push(frame.to_vec());
        }
        Ok(())
    }
    fn as_raw_fd(&self) -> RawFd {
        -1
    }
    fn set_offloads(&mut self, _acked: u64) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = common::memory();
    let (half_a, half_b) = data.split_at(data.len() / 2);
    let (_tx_mock, mut txq) = common::queue_from(&mem, 0, half_a);
    let (_rx_mock, mut rxq) = common::queue_from(&mem, 0x4_0000, half_b);
    let mut backend = Loop { frames: vec![half_b.to_vec()] };
    let mut c = NetCounters::default();
    process_tx(&mut txq, &mem, &mut backend, &mut c);
    let mut rx = RxState::default();
    rx.mergeable = data.first().is_some_and(|b| b & 1 == 1);
    rx.process(&mut rxq, &mem, &mut backend, &mut c);
    rx.flush(&mut rxq, &mem, &mut c);
});
