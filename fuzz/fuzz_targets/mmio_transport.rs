//! The virtio-mmio registers as a hostile driver writes them: any sequence of reads
//! and writes at any offset and width, feature and queue setup in any order, status
//! values that skip steps; the transport never panics.
#![no_main]

use std::sync::Arc;

use isola_vmm::devices::BusDevice;
use isola_vmm::virtio::{ActivateContext, ActivateError, Interrupt, MmioTransport, VirtioDevice};
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

struct Dummy {
    active: bool,
}

impl VirtioDevice for Dummy {
    fn device_type(&self) -> u32 {
        19
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 16]
    }
    fn features(&self) -> u64 {
        1 << 32
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        isola_vmm::virtio::read_config_bytes(&[1, 2, 3, 4, 5, 6, 7, 8], offset, data);
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(&mut self, _ctx: ActivateContext) -> Result<(), ActivateError> {
        if self.active {
            return Err(ActivateError::AlreadyActive("dummy"));
        }
        self.active = true;
        Ok(())
    }
    fn reset(&mut self) {
        self.active = false;
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(mem) = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]) else { return };
    let Ok(irq) = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK) else { return };
    let Ok(mut t) = MmioTransport::new(Box::new(Dummy { active: false }), mem, Arc::new(Interrupt::new(irq))) else {
        return;
    };
    // Each op: [kind, offset, width, value (4 bytes)].
    for op in data.chunks_exact(7) {
        let offset = u64::from(op[1]) * 4 % 0x200 + u64::from(op[0] >> 4 & 3);
        let width = [1usize, 2, 4, 8][usize::from(op[2] & 3)];
        let value = u32::from_le_bytes([op[3], op[4], op[5], op[6]]).to_le_bytes();
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&value);
        if op[0] & 1 == 0 {
            t.write(offset, &buf[..width]);
        } else {
            t.read(offset, &mut buf[..width]);
        }
    }
});
