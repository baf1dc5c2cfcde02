//! Per-vCPU CPUID, derived from KVM_GET_SUPPORTED_CPUID.
//!
//! We only change what identifies a vCPU and the topology; KVM's own leaves
//! (0x4000_0000 and up: signature, features) pass through unchanged so the guest
//! sees exactly the paravirtual interface this host's KVM implements.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_PMU: u32 = 0xa;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_V2_EXT_TOPOLOGY: u32 = 0x1f;
/// First hypervisor leaf: everything from here up is KVM's.
pub const LEAF_HYPERVISOR_BASE: u32 = 0x4000_0000;

const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
const TOPOLOGY_LEVEL_SMT: u32 = 1;
const TOPOLOGY_LEVEL_CORE: u32 = 2;

/// Adjusts `cpuid` (a copy of the supported set) for vCPU `id` of `count`.
/// One socket, one thread per core, `count` cores; APIC id = vCPU index.
pub fn patch_cpuid(cpuid: &mut CpuId, id: u8, count: u8) {
    let count = u32::from(count.max(1));
    let id = u32::from(id);
    // Bits needed to number every core in the x2APIC id.
    let core_shift = 32 - (count - 1).leading_zeros();
    for e in cpuid.as_mut_slice().iter_mut() {
        patch_entry(e, id, count, core_shift);
    }
}

fn patch_entry(e: &mut kvm_cpuid_entry2, id: u32, count: u32, core_shift: u32) {
    match e.function {
        LEAF_FEATURES => {
            // EBX: [31:24] initial APIC id, [23:16] logical processors, [15:8] CLFLUSH size / 8.
            e.ebx = (id << 24) | ((count & 0xff) << 16) | (8 << 8) | (e.ebx & 0xff);
            e.ecx |= ECX_HYPERVISOR;
            if count > 1 {
                e.edx |= EDX_HTT;
            } else {
                e.edx &= !EDX_HTT;
            }
        }
        LEAF_CACHE_PARAMS => {
            // EAX[31:26]: cores per package - 1; [25:14]: threads sharing this cache - 1.
            let level = (e.eax >> 5) & 0x7;
            let sharing = if level >= 3 { count - 1 } else { 0 };
            e.eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((count - 1) & 0x3f) << 26);
        }
        LEAF_PMU => {
            // No virtual PMU is offered.
            e.eax = 0;
            e.ebx = 0;
            e.ecx = 0;
            e.edx = 0;
        }
        LEAF_EXT_TOPOLOGY | LEAF_V2_EXT_TOPOLOGY => {
            e.edx = id;
            match e.index {
                0 => {
                    e.eax = 0;
                    e.ebx = 1;
                    e.ecx = (TOPOLOGY_LEVEL_SMT << 8) | e.index;
                }
                1 => {
                    e.eax = core_shift;
                    e.ebx = count;
                    e.ecx = (TOPOLOGY_LEVEL_CORE << 8) | e.index;
                }
                _ => {
                    e.eax = 0;
                    e.ebx = 0;
                    e.ecx = e.index;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: regs[0],
            ebx: regs[1],
            ecx: regs[2],
            edx: regs[3],
            ..Default::default()
        }
    }

    fn sample() -> CpuId {
        CpuId::from_entries(&[
            entry(0x0, 0, [0x1f, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]),
            entry(LEAF_FEATURES, 0, [0x806f8, 0xff00_00ab, 0, 0]),
            entry(LEAF_CACHE_PARAMS, 0, [0x121, 0, 0, 0]),
            entry(LEAF_CACHE_PARAMS, 3, [0x163, 0, 0, 0]),
            entry(LEAF_EXT_TOPOLOGY, 0, [9, 9, 9, 9]),
            entry(LEAF_EXT_TOPOLOGY, 1, [9, 9, 9, 9]),
            entry(LEAF_EXT_TOPOLOGY, 2, [9, 9, 9, 9]),
            entry(LEAF_HYPERVISOR_BASE, 0, [0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d]),
            entry(LEAF_HYPERVISOR_BASE + 1, 0, [0x1234, 0, 0, 0]),
        ])
        .expect("cpuid")
    }

    fn find(c: &CpuId, f: u32, i: u32) -> kvm_cpuid_entry2 {
        *c.as_slice().iter().find(|e| e.function == f && e.index == i).expect("leaf")
    }

    #[test]
    fn each_vcpu_gets_its_own_apic_id() {
        for id in 0..4u8 {
            let mut c = sample();
            patch_cpuid(&mut c, id, 4);
            let l1 = find(&c, LEAF_FEATURES, 0);
            assert_eq!(l1.ebx >> 24, u32::from(id));
            assert_eq!((l1.ebx >> 16) & 0xff, 4);
            assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
            assert_ne!(l1.edx & EDX_HTT, 0);
            assert_eq!(find(&c, LEAF_EXT_TOPOLOGY, 1).edx, u32::from(id));
        }
    }

    #[test]
    fn topology_leaf_describes_cores_without_smt() {
        let mut c = sample();
        patch_cpuid(&mut c, 2, 3);
        let smt = find(&c, LEAF_EXT_TOPOLOGY, 0);
        let core = find(&c, LEAF_EXT_TOPOLOGY, 1);
        let end = find(&c, LEAF_EXT_TOPOLOGY, 2);
        assert_eq!((smt.eax, smt.ebx, smt.ecx >> 8), (0, 1, 1));
        assert_eq!((core.eax, core.ebx, core.ecx >> 8), (2, 3, 2), "3 cores need 2 id bits");
        assert_eq!(end.ecx >> 8, 0, "level list ends");
        let l3 = find(&c, LEAF_CACHE_PARAMS, 3);
        assert_eq!(l3.eax >> 26, 2);
        assert_eq!((l3.eax >> 14) & 0xfff, 2);
    }

    #[test]
    fn kvm_leaves_pass_through_unchanged() {
        let before = sample();
        let mut c = sample();
        patch_cpuid(&mut c, 1, 2);
        for f in [LEAF_HYPERVISOR_BASE, LEAF_HYPERVISOR_BASE + 1] {
            let (a, b) = (find(&before, f, 0), find(&c, f, 0));
            assert_eq!((a.eax, a.ebx, a.ecx, a.edx), (b.eax, b.ebx, b.ecx, b.edx));
        }
    }

    #[test]
    fn single_vcpu_has_no_htt() {
        let mut c = sample();
        patch_cpuid(&mut c, 0, 1);
        assert_eq!(find(&c, LEAF_FEATURES, 0).edx & EDX_HTT, 0);
        assert_eq!(find(&c, LEAF_EXT_TOPOLOGY, 1).eax, 0);
    }
}
