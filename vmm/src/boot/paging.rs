//! Identity page tables for entering long mode: the low 4 GiB with 2 MiB pages,
//! so both RAM and the MMIO gap (boot timer, virtio) are reachable before the guest
//! builds its own tables.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::BootError;
use crate::memory::PML4_ADDR;

/// PML4 + PDPT + 4 page directories.
pub const PAGE_TABLE_BYTES: u64 = 6 * 4096;
const PRESENT_RW: u64 = 0x3;
const PAGE_SIZE_2M: u64 = 0x80;

// The tables sit between the boot stack and the command line.
const _: () = assert!(PML4_ADDR + PAGE_TABLE_BYTES <= crate::memory::CMDLINE_ADDR);
const _: () = assert!(crate::memory::BOOT_STACK_ADDR < PML4_ADDR);

/// Writes the tables at [`PML4_ADDR`] and returns the value for CR3.
pub fn setup_identity_paging(mem: &GuestMemoryMmap) -> Result<u64, BootError> {
    let pml4 = PML4_ADDR;
    let pdpt = pml4 + 0x1000;
    let pd_base = pdpt + 0x1000;
    let write = |addr: u64, val: u64| {
        mem.write_obj(val, GuestAddress(addr)).map_err(|_| BootError::GuestWrite { what: "page tables" })
    };
    write(pml4, pdpt | PRESENT_RW)?;
    for gib in 0..4u64 {
        let pd = pd_base + gib * 0x1000;
        write(pdpt + gib * 8, pd | PRESENT_RW)?;
        for i in 0..512u64 {
            let phys = (gib << 30) | (i << 21);
            write(pd + i * 8, phys | PRESENT_RW | PAGE_SIZE_2M)?;
        }
    }
    Ok(pml4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    /// Walks the tables like the MMU would for a 2 MiB mapping.
    fn translate(mem: &GuestMemoryMmap, cr3: u64, va: u64) -> Option<u64> {
        let entry = |table: u64, idx: u64| -> u64 {
            mem.read_obj::<u64>(GuestAddress((table & !0xfff) + idx * 8)).expect("table in RAM")
        };
        let e4 = entry(cr3, (va >> 39) & 0x1ff);
        if e4 & 1 == 0 {
            return None;
        }
        let e3 = entry(e4, (va >> 30) & 0x1ff);
        if e3 & 1 == 0 {
            return None;
        }
        let e2 = entry(e3, (va >> 21) & 0x1ff);
        if e2 & 1 == 0 || e2 & PAGE_SIZE_2M == 0 {
            return None;
        }
        Some((e2 & !0x1f_ffff & 0x000f_ffff_ffff_ffff) | (va & 0x1f_ffff))
    }

    #[test]
    fn low_four_gib_are_identity_mapped() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("mem");
        let cr3 = setup_identity_paging(&mem).expect("tables");
        assert_eq!(cr3, PML4_ADDR);
        for va in [0u64, 0x7000, 0x10_0000, 0x3fff_ffff, 0xd000_0000, 0xffff_fff0] {
            assert_eq!(translate(&mem, cr3, va), Some(va), "va {va:#x}");
        }
        assert_eq!(translate(&mem, cr3, 0x1_0000_0000), None, "nothing above 4 GiB");
    }

    #[test]
    fn too_little_memory_is_an_error_not_a_panic() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x9000)]).expect("mem");
        assert!(setup_identity_paging(&mem).is_err());
    }
}
