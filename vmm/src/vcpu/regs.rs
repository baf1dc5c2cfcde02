//! Initial register state for each boot protocol, the MSRs Linux expects, and the LAPIC.

use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::boot::{gdt_table, kvm_segment_from_gdt, BootProtocol, BOOT_GDT};
use crate::memory::{BOOT_STACK_ADDR, GDT_ADDR, IDT_ADDR};

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// The general registers at entry: `boot_info` goes in `%rsi` (Linux) or `%rbx` (PVH).
pub fn boot_regs(protocol: BootProtocol, entry: u64, boot_info: u64) -> kvm_regs {
    let mut regs = kvm_regs { rflags: 0x2, rip: entry, ..Default::default() };
    match protocol {
        BootProtocol::Linux64 => {
            regs.rsp = BOOT_STACK_ADDR;
            regs.rbp = BOOT_STACK_ADDR;
            regs.rsi = boot_info;
        }
        BootProtocol::Pvh => regs.rbx = boot_info,
    }
    regs
}

/// Writes the GDT and an empty IDT into guest memory and fills the segment and
/// control registers for the protocol. `cr3` is used only for long mode.
pub fn boot_sregs(
    mem: &GuestMemoryMmap,
    protocol: BootProtocol,
    cr3: u64,
    sregs: &mut kvm_sregs,
) -> Result<(), vm_memory::GuestMemoryError> {
    let long = protocol == BootProtocol::Linux64;
    let gdt = gdt_table(long);
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(GDT_ADDR + (i as u64) * 8))?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_ADDR))?;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 7;
    let code = kvm_segment_from_gdt(gdt[1], BOOT_GDT.code);
    let data = kvm_segment_from_gdt(gdt[2], BOOT_GDT.data);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment_from_gdt(gdt[3], BOOT_GDT.tss);
    if long {
        sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
        sregs.cr3 = cr3;
        sregs.cr4 = X86_CR4_PAE;
        sregs.efer = EFER_LME | EFER_LMA;
    } else {
        sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
        sregs.cr3 = 0;
        sregs.cr4 = 0;
        sregs.efer = 0;
    }
    Ok(())
}

/// x87 and SSE defaults as after FINIT.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() }
}

/// MSR indices set at boot.
pub mod msr {
    pub const IA32_TSC: u32 = 0x10;
    pub const IA32_SYSENTER_CS: u32 = 0x174;
    pub const IA32_SYSENTER_ESP: u32 = 0x175;
    pub const IA32_SYSENTER_EIP: u32 = 0x176;
    pub const IA32_MISC_ENABLE: u32 = 0x1a0;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SYSCALL_MASK: u32 = 0xc000_0084;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
}

/// The MSRs Linux expects at entry: syscall MSRs cleared, fast strings on,
/// MTRRs enabled with write-back as the default type.
pub fn boot_msr_entries() -> Vec<kvm_msr_entry> {
    let e = |index, data| kvm_msr_entry { index, data, ..Default::default() };
    vec![
        e(msr::IA32_SYSENTER_CS, 0),
        e(msr::IA32_SYSENTER_ESP, 0),
        e(msr::IA32_SYSENTER_EIP, 0),
        e(msr::STAR, 0),
        e(msr::CSTAR, 0),
        e(msr::KERNEL_GS_BASE, 0),
        e(msr::SYSCALL_MASK, 0),
        e(msr::LSTAR, 0),
        e(msr::IA32_TSC, 0),
        e(msr::IA32_MISC_ENABLE, 1),
        e(msr::MTRR_DEF_TYPE, (1 << 11) | 6),
    ]
}

/// Wraps entries for KVM_SET_MSRS.
pub fn boot_msrs() -> Result<Msrs, vmm_sys_util::fam::Error> {
    Msrs::from_entries(&boot_msr_entries())
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(state: &kvm_lapic_state, offset: usize) -> u32 {
    let b = &state.regs[offset..offset + 4];
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

fn set_lapic_reg(state: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, b) in value.to_le_bytes().iter().enumerate() {
        state.regs[offset + i] = *b as _;
    }
}

/// LINT0 → ExtINT (the PIC), LINT1 → NMI, as the MP spec's virtual wire mode.
pub fn configure_lint(state: &mut kvm_lapic_state) {
    let set_mode = |reg: u32, mode: u32| (reg & !0x700) | (mode << 8);
    let lvt0 = lapic_reg(state, APIC_LVT0);
    set_lapic_reg(state, APIC_LVT0, set_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = lapic_reg(state, APIC_LVT1);
    set_lapic_reg(state, APIC_LVT1, set_mode(lvt1, APIC_MODE_NMI));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("mem")
    }

    #[test]
    fn long_mode_sregs_enable_paging_pae_and_lma() {
        let m = mem();
        let mut s = kvm_sregs::default();
        boot_sregs(&m, BootProtocol::Linux64, 0x9000, &mut s).expect("sregs");
        assert_eq!(s.cr0 & (X86_CR0_PE | X86_CR0_PG), X86_CR0_PE | X86_CR0_PG);
        assert_eq!(s.cr4 & X86_CR4_PAE, X86_CR4_PAE);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, 0x9000);
        assert_eq!((s.cs.l, s.cs.selector), (1, BOOT_GDT.code));
        let gdt1: u64 = m.read_obj(GuestAddress(GDT_ADDR + 8)).expect("gdt");
        assert_eq!(gdt1, gdt_table(true)[1]);
    }

    #[test]
    fn pvh_sregs_are_flat_32_bit_protected_mode_without_paging() {
        let m = mem();
        let mut s = kvm_sregs::default();
        boot_sregs(&m, BootProtocol::Pvh, 0x9000, &mut s).expect("sregs");
        assert_eq!(s.cr0 & X86_CR0_PG, 0);
        assert_eq!(s.cr0 & X86_CR0_PE, X86_CR0_PE);
        assert_eq!((s.efer, s.cr4), (0, 0));
        assert_eq!((s.cs.l, s.cs.db), (0, 1));
    }

    #[test]
    fn boot_info_goes_in_the_protocol_register() {
        let r = boot_regs(BootProtocol::Linux64, 0x100_0000, 0x7000);
        assert_eq!((r.rip, r.rsi, r.rbx, r.rsp), (0x100_0000, 0x7000, 0, BOOT_STACK_ADDR));
        let p = boot_regs(BootProtocol::Pvh, 0x100_0000, 0x6000);
        assert_eq!((p.rbx, p.rsi), (0x6000, 0));
        assert_eq!(p.rflags, 0x2);
    }

    #[test]
    fn msrs_enable_mtrrs_and_fast_strings() {
        let m = boot_msr_entries();
        let get = |i| m.iter().find(|e| e.index == i).map(|e| e.data);
        assert_eq!(get(msr::MTRR_DEF_TYPE), Some((1 << 11) | 6));
        assert_eq!(get(msr::IA32_MISC_ENABLE), Some(1));
        assert_eq!(get(msr::LSTAR), Some(0));
        assert!(boot_msrs().is_ok());
    }

    #[test]
    fn lint_pins_are_extint_and_nmi() {
        let mut s = kvm_lapic_state::default();
        set_lapic_reg(&mut s, APIC_LVT0, 0x0001_0700);
        configure_lint(&mut s);
        assert_eq!((lapic_reg(&s, APIC_LVT0) >> 8) & 7, APIC_MODE_EXTINT);
        assert_eq!(lapic_reg(&s, APIC_LVT0) & 0x1_0000, 0x1_0000, "other bits kept");
        assert_eq!((lapic_reg(&s, APIC_LVT1) >> 8) & 7, APIC_MODE_NMI);
    }
}
