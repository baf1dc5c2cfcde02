//! vCPU creation, boot state, and the run loop that turns KVM exits into device
//! accesses or a clear verdict.

pub mod cpuid;
mod exit;
pub mod pause;
pub mod regs;
pub mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kvm_bindings::CpuId;
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use crate::boot::{BootProtocol, LoadedKernel};
use crate::devices::Bus;
pub use exit::{ExitAction, ExitKind, VcpuError};

/// Largest vCPU count we build topology for.
pub const MAX_VCPUS: u8 = 64;

/// Everything the vCPUs share.
#[derive(Clone)]
pub struct VcpuShared {
    pub pio: Bus,
    pub mmio: Bus,
    /// Set by the VMM to make every vCPU leave its loop at the next exit.
    pub stop: Arc<AtomicBool>,
    /// Set by the control API: every vCPU parks at its next exit ([`pause`]).
    pub pause: Arc<pause::PauseGate>,
}

/// How a vCPU loop ended.
#[derive(Debug)]
pub enum VcpuOutcome {
    /// The VMM asked it to stop; `rip` is where the guest was.
    Stopped { rip: u64 },
    /// The guest did something that ends the VM.
    Failed(VcpuError),
}

pub struct Vcpu {
    pub id: u8,
    fd: VcpuFd,
    shared: VcpuShared,
    /// The MSRs a snapshot saves (KVM's own list, read once at setup).
    msr_indices: Vec<u32>,
}

impl Vcpu {
    /// Creates vCPU `id` of `count`, with its own CPUID and boot registers.
    /// Only vCPU 0 starts at the kernel entry; the others wait for INIT/SIPI.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vm: &VmFd,
        id: u8,
        count: u8,
        supported: &CpuId,
        mem: &GuestMemoryMmap,
        kernel: &LoadedKernel,
        boot_info: u64,
        cr3: u64,
        shared: VcpuShared,
    ) -> Result<Self, VcpuError> {
        let kvm = |op| move |source| VcpuError::Kvm { op, source };
        let fd = vm.create_vcpu(u64::from(id)).map_err(kvm("create vcpu"))?;
        let mut cpuid = supported.clone();
        cpuid::patch_cpuid(&mut cpuid, id, count);
        fd.set_cpuid2(&cpuid).map_err(kvm("set cpuid"))?;
        let msrs = regs::boot_msrs().map_err(|_| VcpuError::Setup("msr list"))?;
        let written = fd.set_msrs(&msrs).map_err(kvm("set msrs"))?;
        if written != msrs.as_slice().len() {
            log::warn!("vcpu {id}: KVM accepted {written} of {} boot MSRs", msrs.as_slice().len());
        }
        let mut lapic = fd.get_lapic().map_err(kvm("get lapic"))?;
        regs::configure_lint(&mut lapic);
        fd.set_lapic(&lapic).map_err(kvm("set lapic"))?;
        if id == 0 {
            let mut sregs = fd.get_sregs().map_err(kvm("get sregs"))?;
            regs::boot_sregs(mem, kernel.protocol, cr3, &mut sregs).map_err(|_| VcpuError::Setup("gdt"))?;
            fd.set_sregs(&sregs).map_err(kvm("set sregs"))?;
            fd.set_regs(&regs::boot_regs(kernel.protocol, kernel.entry.0, boot_info)).map_err(kvm("set regs"))?;
            fd.set_fpu(&regs::boot_fpu()).map_err(kvm("set fpu"))?;
        } else if kernel.protocol == BootProtocol::Pvh {
            log::debug!("vcpu {id} waits for INIT/SIPI from the PVH guest");
        }
        Ok(Self { id, fd, shared, msr_indices: vec![] })
    }

    /// Creates vCPU `id` of `count` for a restore: its CPUID as a boot sets it, its
    /// state from [`Vcpu::apply`] once the VM's own state is back.
    pub fn for_restore(vm: &VmFd, id: u8, count: u8, supported: &CpuId, shared: VcpuShared) -> Result<Self, VcpuError> {
        let fd = vm.create_vcpu(u64::from(id)).map_err(|source| VcpuError::Kvm { op: "create vcpu", source })?;
        let mut cpuid = supported.clone();
        cpuid::patch_cpuid(&mut cpuid, id, count);
        fd.set_cpuid2(&cpuid).map_err(|source| VcpuError::Kvm { op: "set cpuid", source })?;
        Ok(Self { id, fd, shared, msr_indices: vec![] })
    }

    /// Puts back the state a snapshot saved.
    pub fn apply(&mut self, saved: &state::VcpuState) -> Result<(), VcpuError> {
        saved.apply(&self.fd)?;
        self.msr_indices = saved.msrs.iter().map(|m| m.index).collect();
        Ok(())
    }

    /// Which MSRs a snapshot of this vCPU saves.
    pub fn set_snapshot_msrs(&mut self, indices: Vec<u32>) {
        self.msr_indices = indices;
    }

    fn rip(&self) -> u64 {
        self.fd.get_regs().map(|r| r.rip).unwrap_or(0)
    }

    /// Runs until the guest ends the VM or the VMM asks to stop.
    pub fn run(&mut self) -> VcpuOutcome {
        self.shared.pause.register_current_thread(self.id);
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return VcpuOutcome::Stopped { rip: self.rip() };
            }
            if self.shared.pause.requested() {
                self.park();
                continue;
            }
            let shared = &self.shared;
            let kind = match self.fd.run() {
                Ok(exit) => dispatch(shared, exit),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(source) => return VcpuOutcome::Failed(VcpuError::Kvm { op: "run", source }),
            };
            match exit::classify(&kind) {
                ExitAction::Continue => {}
                ExitAction::Fail => return VcpuOutcome::Failed(self.describe(kind)),
            }
        }
    }

    /// Finishes the exit in progress (an I/O read's data goes into the guest's
    /// registers only on the next KVM_RUN: `immediate_exit` runs that part and returns
    /// at once), then serves the control API until it resumes or stops the VM.
    fn park(&mut self) {
        self.fd.set_kvm_immediate_exit(1);
        let _ = self.fd.run();
        self.fd.set_kvm_immediate_exit(0);
        let (fd, msrs) = (&self.fd, &self.msr_indices);
        self.shared.pause.park(self.id, &self.shared.stop, || state::VcpuState::capture(fd, msrs));
    }

    fn describe(&mut self, kind: ExitKind) -> VcpuError {
        let rip = self.rip();
        let suberror = if kind == ExitKind::InternalError {
            let run = self.fd.get_kvm_run();
            // SAFETY: KVM filled the `internal` member of the union for KVM_EXIT_INTERNAL_ERROR,
            // which is the exit we are describing; it is plain data.
            unsafe { run.__bindgen_anon_1.internal.suberror }
        } else {
            0
        };
        exit::error_for(kind, self.id, rip, suberror)
    }
}

/// Serves device accesses inline; returns what kind of exit it was.
fn dispatch(shared: &VcpuShared, exit: VcpuExit<'_>) -> ExitKind {
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !shared.pio.read(u64::from(port), data) {
                // Nothing there: an ISA bus floats high.
                data.fill(0xff);
            }
            ExitKind::Io
        }
        VcpuExit::IoOut(port, data) => {
            if !shared.pio.write(u64::from(port), data) {
                log::trace!("unclaimed port write {port:#x}");
            }
            ExitKind::Io
        }
        VcpuExit::MmioRead(addr, data) => {
            if !shared.mmio.read(addr, data) {
                log::debug!("unclaimed mmio read {addr:#x}");
                data.fill(0xff);
            }
            ExitKind::Io
        }
        VcpuExit::MmioWrite(addr, data) => {
            if !shared.mmio.write(addr, data) {
                log::debug!("unclaimed mmio write {addr:#x}");
            }
            ExitKind::Io
        }
        VcpuExit::Hlt => ExitKind::Hlt,
        VcpuExit::Shutdown => ExitKind::Shutdown,
        VcpuExit::FailEntry(reason, _) => ExitKind::FailEntry(reason),
        VcpuExit::InternalError => ExitKind::InternalError,
        VcpuExit::SystemEvent(kind, _) => ExitKind::SystemEvent(kind),
        VcpuExit::Intr | VcpuExit::IrqWindowOpen => ExitKind::Io,
        other => ExitKind::Other(format!("{other:?}")),
    }
}
