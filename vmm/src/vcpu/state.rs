//! One vCPU's whole architectural state, read from KVM at a snapshot and written back
//! into a fresh vCPU at restore (in the order Firecracker found KVM needs).

use kvm_bindings::{
    kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs,
    kvm_xsave, Msrs,
};
use kvm_ioctls::VcpuFd;
use serde::{Deserialize, Serialize};

use super::VcpuError;

/// Largest MSR list we save or load (KVM's own list is a few hundred long).
pub const MAX_MSRS: usize = 1024;

#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub lapic: kvm_lapic_state,
    pub msrs: Vec<kvm_msr_entry>,
    pub mp_state: kvm_mp_state,
    pub events: kvm_vcpu_events,
    pub debugregs: kvm_debugregs,
}

fn kvm(op: &'static str) -> impl Fn(kvm_ioctls::Error) -> VcpuError {
    move |source| VcpuError::Kvm { op, source }
}

/// Reads every MSR in `indices` that KVM can read. KVM stops at the first one it
/// cannot: that one is dropped and the read goes on after it.
fn read_msrs(fd: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, VcpuError> {
    let mut out = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let entries: Vec<kvm_msr_entry> =
            rest.iter().map(|&index| kvm_msr_entry { index, ..Default::default() }).collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| VcpuError::Setup("msr list"))?;
        let n = fd.get_msrs(&mut msrs).map_err(kvm("get msrs"))?;
        out.extend_from_slice(&msrs.as_slice()[..n.min(rest.len())]);
        rest = rest.get(n + 1..).unwrap_or_default();
    }
    Ok(out)
}

impl VcpuState {
    /// Reads the state of a vCPU that is out of KVM_RUN with no exit pending.
    pub fn capture(fd: &VcpuFd, msr_indices: &[u32]) -> Result<Self, VcpuError> {
        Ok(Self {
            regs: fd.get_regs().map_err(kvm("get regs"))?,
            sregs: fd.get_sregs().map_err(kvm("get sregs"))?,
            xsave: fd.get_xsave().map_err(kvm("get xsave"))?,
            xcrs: fd.get_xcrs().map_err(kvm("get xcrs"))?,
            lapic: fd.get_lapic().map_err(kvm("get lapic"))?,
            msrs: read_msrs(fd, msr_indices)?,
            mp_state: fd.get_mp_state().map_err(kvm("get mp state"))?,
            events: fd.get_vcpu_events().map_err(kvm("get vcpu events"))?,
            debugregs: fd.get_debug_regs().map_err(kvm("get debug regs"))?,
        })
    }

    /// Writes it into a fresh vCPU whose CPUID is already set.
    pub fn apply(&self, fd: &VcpuFd) -> Result<(), VcpuError> {
        if self.msrs.len() > MAX_MSRS {
            return Err(VcpuError::Setup("snapshot MSR list too long"));
        }
        fd.set_mp_state(self.mp_state).map_err(kvm("set mp state"))?;
        fd.set_regs(&self.regs).map_err(kvm("set regs"))?;
        fd.set_sregs(&self.sregs).map_err(kvm("set sregs"))?;
        // SAFETY: the xsave area came from KVM_GET_XSAVE on this kernel (the snapshot
        // header checks the KVM API and host), so it matches the size KVM expects.
        unsafe { fd.set_xsave(&self.xsave) }.map_err(kvm("set xsave"))?;
        // A host without XSAVE reports no XCRs and refuses to set any (even none).
        if self.xcrs.nr_xcrs > 0 {
            fd.set_xcrs(&self.xcrs).map_err(kvm("set xcrs"))?;
        }
        fd.set_debug_regs(&self.debugregs).map_err(kvm("set debug regs"))?;
        fd.set_lapic(&self.lapic).map_err(kvm("set lapic"))?;
        let msrs = Msrs::from_entries(&self.msrs).map_err(|_| VcpuError::Setup("snapshot msr list"))?;
        let n = fd.set_msrs(&msrs).map_err(kvm("set msrs"))?;
        if n != self.msrs.len() {
            let index = self.msrs.get(n).map_or(0, |m| m.index);
            log::warn!("restore: KVM took {n} of {} MSRs (stopped at {index:#x})", self.msrs.len());
        }
        fd.set_vcpu_events(&self.events).map_err(kvm("set vcpu events"))?;
        Ok(())
    }
}
