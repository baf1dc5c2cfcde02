//! Untrusted kernel files: any bytes as an ELF vmlinux (with or without a PVH note) or
//! a bzImage are loaded or refused with an error, never a panic or a write outside
//! guest memory.
#![no_main]

use std::io::Write;

use isola_vmm::boot::load_kernel;
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const RAM: usize = 16 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(mem) = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]) else { return };
    let Ok(mut f) = tempfile::NamedTempFile::new() else { return };
    if f.write_all(data).is_err() {
        return;
    }
    let _ = load_kernel(&mem, f.path(), RAM as u64);
});
