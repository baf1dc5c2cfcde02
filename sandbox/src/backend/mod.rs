//! One module per program a sandbox runs: where its binary is, its command line, its
//! sockets and how to tell it is ready. `sandbox.rs` supervises them all the same way.

pub mod console;
pub mod helper_filter;
pub mod isola_vmm;
pub mod minimal_root;
pub mod own_filter;
pub mod ports;
pub mod qemu;
pub mod qmp;
pub mod unprivileged;
pub mod vhost_vsock;
pub mod virtiofsd;

use std::path::PathBuf;
use std::process::Command;

use crate::assets::find_binary;
use crate::host::KvmKind;
use crate::hypervisor::{BootSpec, HypervisorError, HypervisorKind};

/// The one lookup of a backend binary: beside this program, then on PATH.
pub fn require(exe: &'static str, hint: &'static str) -> Result<PathBuf, HypervisorError> {
    find_binary(exe).ok_or(HypervisorError::MissingBinary(exe, hint))
}

/// The executable name a VMM of `kind` runs as (to recognise it by pid later).
pub fn vmm_exe(kind: HypervisorKind) -> &'static str {
    match kind {
        HypervisorKind::IsolaVmm => isola_vmm::EXE,
        HypervisorKind::Qemu => qemu::EXE,
    }
}

/// Host memory a sandbox may use beyond its guest RAM (the limit of its cgroup, which
/// holds the VMM and its helpers): isola-vmm itself needs a few MiB and virtiofsd a
/// few more; QEMU under TCG also keeps a translated-code cache, which grows with the
/// guest's code (QEMU's default cap is 1 GiB; 512 MiB is far above what it reaches here).
pub fn overhead_bytes(kind: HypervisorKind) -> u64 {
    match kind {
        HypervisorKind::IsolaVmm => 128 << 20,
        HypervisorKind::Qemu => 512 << 20,
    }
}

/// The helper daemons a sandbox may have.
pub const HELPER_EXES: &[&str] = &[vhost_vsock::EXE, virtiofsd::EXE, console::EXE, ports::EXE];

/// Every program a sandbox can start: its VMM (either kind) and its helpers.
pub const PROGRAMS: &[&str] = &[isola_vmm::EXE, qemu::EXE, vhost_vsock::EXE, virtiofsd::EXE, console::EXE, ports::EXE];

/// The command line of a boot probe of `spec` on `kind` (the guest alone, no sandbox).
pub fn probe_command(kind: HypervisorKind, spec: &BootSpec, kvm: KvmKind) -> Result<Command, HypervisorError> {
    spec.validate()?;
    match kind {
        HypervisorKind::IsolaVmm => isola_vmm::probe_command(spec),
        HypervisorKind::Qemu => qemu::probe_command(spec, kvm),
    }
}
