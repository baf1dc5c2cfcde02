//! The Intel MultiProcessor table (MP spec 1.4), as Firecracker writes it: without ACPI
//! it is how Linux finds the other vCPUs (to send them INIT/SIPI) and the IO-APIC (to
//! route device interrupts through it instead of the 8259 in virtual-wire mode).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::BootError;
use crate::memory::EBDA_START;

/// Where the floating pointer goes: the first KiB of the EBDA, which Linux scans
/// (`smp_scan_config(639 * 0x400, 0x400)`); the configuration table follows it.
pub const MPTABLE_ADDR: u64 = EBDA_START;
/// Where the guest finds its local APIC and the IO-APIC (KVM's in-kernel models).
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Pins of KVM's in-kernel IO-APIC; ISA IRQ n is wired to pin n.
pub const IOAPIC_PINS: u8 = 24;

const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// Family 6, as Firecracker reports: Linux only reads it for old quirks.
const CPU_SIGNATURE: u32 = 0x600;
/// CPUID.1:EDX FPU and APIC.
const CPU_FEATURES: u32 = 0x201;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_VECTORED: u8 = 0;
const INT_NMI: u8 = 1;
const INT_EXTINT: u8 = 3;
const BUS_ISA: u8 = 0;

/// The IO-APIC's id: right after the vCPUs' APIC ids (0..vcpus), as Firecracker does.
pub fn ioapic_id(vcpus: u8) -> u8 {
    vcpus + 1
}

/// The whole table for `vcpus` CPUs (APIC ids 0..vcpus, vCPU 0 the bootstrap one),
/// laid out to live at [`MPTABLE_ADDR`].
pub fn build(vcpus: u8) -> Result<Vec<u8>, BootError> {
    // APIC ids are 8 bits and the IO-APIC takes the one after the last vCPU.
    if vcpus == 0 || vcpus >= 0xfe {
        return Err(BootError::GuestWrite { what: "mp table (vcpu count out of range)" });
    }
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..vcpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, id, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, BUS_ISA]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    let ioapic = ioapic_id(vcpus);
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    count += 1;
    for pin in 0..IOAPIC_PINS {
        // Conforming polarity and trigger (flags 0): ISA's edge, active high.
        entries.extend_from_slice(&[ENTRY_IO_INTERRUPT, INT_VECTORED, 0, 0, BUS_ISA, pin, ioapic, pin]);
        count += 1;
    }
    // The 8259 stays wired to LINT0 (ExtINT) for the early boot; NMI to LINT1 of every CPU.
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_EXTINT, 0, 0, BUS_ISA, 0, 0, 0]);
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_NMI, 0, 0, BUS_ISA, 0, 0xff, 1]);
    count += 2;

    let table_addr = MPTABLE_ADDR as u32 + FLOATING_LEN as u32;
    let table_len =
        u16::try_from(HEADER_LEN + entries.len()).map_err(|_| BootError::GuestWrite { what: "mp table (too long)" })?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&table_len.to_le_bytes());
    header.extend_from_slice(&[4, 0]); // spec 1.4, checksum below
    header.extend_from_slice(b"ISOLA   ");
    header.extend_from_slice(b"isola-vmm   ");
    header.extend_from_slice(&0u32.to_le_bytes()); // no OEM table
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    header.extend_from_slice(&[0; 4]); // no extended table
    let mut table = header;
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut floating = Vec::with_capacity(FLOATING_LEN);
    floating.extend_from_slice(b"_MP_");
    floating.extend_from_slice(&table_addr.to_le_bytes());
    floating.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // 16 bytes, spec 1.4, table present
    floating[10] = checksum(&floating);

    floating.extend_from_slice(&table);
    Ok(floating)
}

/// The byte that makes `bytes` sum to zero (mod 256).
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Writes the table for `vcpus` CPUs into guest memory.
pub fn write(mem: &GuestMemoryMmap, vcpus: u8) -> Result<(), BootError> {
    let table = build(vcpus)?;
    mem.write_slice(&table, GuestAddress(MPTABLE_ADDR)).map_err(|_| BootError::GuestWrite { what: "mp table" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums_to_zero(b: &[u8]) -> bool {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x)) == 0
    }

    /// What Linux's mpparse would find.
    struct Parsed {
        cpus: Vec<u8>,
        bsp: Vec<u8>,
        ioapic: u8,
        routes: Vec<(u8, u8)>,
    }

    /// Reads the table back the way Linux's mpparse does.
    fn parse(t: &[u8]) -> Parsed {
        assert_eq!(&t[..4], b"_MP_");
        assert!(sums_to_zero(&t[..16]), "floating pointer checksum");
        let addr = u32::from_le_bytes(t[4..8].try_into().expect("4 bytes")) as u64;
        let table = &t[(addr - MPTABLE_ADDR) as usize..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len(), "length covers exactly the entries");
        assert!(sums_to_zero(&table[..len]), "table checksum");
        let count = u16::from_le_bytes([table[34], table[35]]);
        let (mut cpus, mut bsp, mut ioapic, mut routes) = (vec![], vec![], 0, vec![]);
        let mut at = HEADER_LEN;
        for _ in 0..count {
            let e = &table[at..];
            at += match e[0] {
                ENTRY_PROCESSOR => {
                    cpus.push(e[1]);
                    if e[3] & CPU_BSP != 0 {
                        bsp.push(e[1]);
                    }
                    20
                }
                ENTRY_IOAPIC => {
                    ioapic = e[1];
                    assert_eq!(u32::from_le_bytes(e[4..8].try_into().expect("4 bytes")), IOAPIC_ADDR);
                    8
                }
                ENTRY_IO_INTERRUPT => {
                    assert_eq!(e[6], ioapic, "routes point at the IO-APIC");
                    routes.push((e[5], e[7]));
                    8
                }
                ENTRY_BUS | ENTRY_LOCAL_INTERRUPT => 8,
                other => panic!("unknown entry type {other}"),
            };
        }
        assert_eq!(at, len, "entry count matches the length");
        Parsed { cpus, bsp, ioapic, routes }
    }

    #[test]
    fn every_vcpu_is_listed_and_only_vcpu0_boots() {
        let Parsed { cpus, bsp, ioapic, .. } = parse(&build(4).expect("table"));
        assert_eq!(cpus, vec![0, 1, 2, 3]);
        assert_eq!(bsp, vec![0]);
        assert_eq!(ioapic, 5, "the IO-APIC id is not a vCPU's");
    }

    #[test]
    fn isa_irqs_reach_the_same_ioapic_pin() {
        let routes = parse(&build(1).expect("table")).routes;
        assert_eq!(routes.len(), usize::from(IOAPIC_PINS));
        assert!(routes.iter().all(|(irq, pin)| irq == pin), "{routes:?}");
    }

    #[test]
    fn the_largest_table_stays_in_the_reserved_area_below_1mib() {
        let t = build(crate::vcpu::MAX_VCPUS).expect("table");
        parse(&t);
        assert!(MPTABLE_ADDR + t.len() as u64 <= crate::memory::HIMEM_START, "{} bytes", t.len());
    }

    #[test]
    fn impossible_vcpu_counts_are_refused() {
        assert!(build(0).is_err());
        assert!(build(0xfe).is_err());
    }
}
