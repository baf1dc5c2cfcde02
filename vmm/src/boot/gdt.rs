//! The boot GDT and its conversion to KVM segment registers.

use kvm_bindings::kvm_segment;

/// Selector layout of [`gdt_table`]: null, code, data, TSS.
#[derive(Clone, Copy, Debug)]
pub struct GdtLayout {
    pub code: u16,
    pub data: u16,
    pub tss: u16,
}

/// Selectors into the boot GDT (index × 8).
pub const BOOT_GDT: GdtLayout = GdtLayout { code: 0x08, data: 0x10, tss: 0x18 };

/// Packs one GDT descriptor from flags (access byte + granularity nibble), base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
}

/// The boot GDT. `long_mode` picks a 64-bit code segment (L=1) or a 32-bit one (D=1, for PVH).
pub fn gdt_table(long_mode: bool) -> [u64; 4] {
    let code = if long_mode { 0xa09b } else { 0xc09b };
    [gdt_entry(0, 0, 0), gdt_entry(code, 0, 0xfffff), gdt_entry(0xc093, 0, 0xfffff), gdt_entry(0x808b, 0, 0xfffff)]
}

/// Expands a packed descriptor into what KVM_SET_SREGS takes.
pub fn kvm_segment_from_gdt(entry: u64, selector: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    // With 4 KiB granularity, KVM wants the limit in bytes.
    let limit = if g == 1 { (raw_limit << 12) | 0xfff } else { raw_limit };
    kvm_segment {
        base,
        limit,
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        padding: 0,
        unusable: if (entry >> 47) & 1 == 0 { 1 } else { 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_mode_code_segment_matches_the_architectural_encoding() {
        // The canonical flat 64-bit code descriptor.
        assert_eq!(gdt_table(true)[1], 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_table(true)[2], 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_table(false)[1], 0x00cf_9b00_0000_ffff);
    }

    #[test]
    fn segment_expansion_round_trips_flags_and_limit() {
        let code = kvm_segment_from_gdt(gdt_table(true)[1], BOOT_GDT.code);
        assert_eq!((code.l, code.db, code.g, code.present, code.s), (1, 0, 1, 1, 1));
        assert_eq!(code.type_, 0xb);
        assert_eq!(code.limit, 0xffff_ffff);
        assert_eq!(code.selector, 0x08);
        let data32 = kvm_segment_from_gdt(gdt_table(false)[2], BOOT_GDT.data);
        assert_eq!((data32.l, data32.db, data32.type_), (0, 1, 3));
        let null = kvm_segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
    }

    #[test]
    fn base_bits_are_split_across_the_descriptor() {
        let e = gdt_entry(0x008b, 0x1234_5678, 0x67);
        let s = kvm_segment_from_gdt(e, 0x18);
        assert_eq!(s.base, 0x1234_5678);
        assert_eq!(s.limit, 0x67);
        assert_eq!(s.g, 0);
    }
}
