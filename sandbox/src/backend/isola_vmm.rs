//! isola-vmm, our own KVM VMM: it serves the hybrid-vsock socket and the tap itself,
//! and is a vhost-user frontend to virtiofsd.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::hypervisor::{BootSpec, HypervisorError};

pub const EXE: &str = "isola-vmm";

pub fn find() -> Result<PathBuf, HypervisorError> {
    super::require(EXE, " (cargo build)")
}

/// isola-vmm booting `spec`, with no time limit (a sandbox runs until stopped).
pub fn base_command(spec: &BootSpec) -> Result<Command, HypervisorError> {
    Ok(command_at(&find()?, spec))
}

/// The isola-vmm at `bin` booting `spec` (benchmarks compare two builds this way).
pub fn command_at(bin: &Path, spec: &BootSpec) -> Command {
    let mut c = Command::new(bin);
    c.arg("--kernel").arg(&spec.kernel);
    if let Some(rd) = &spec.initrd {
        c.arg("--initrd").arg(rd);
    }
    c.args(["--cmdline", &spec.cmdline, "--mem-mib", &spec.mem_mib.to_string(), "--vcpus", &spec.vcpus.to_string()]);
    c
}

/// A boot probe: the guest alone, ended by isola-vmm itself after the spec's timeout.
pub fn probe_command(spec: &BootSpec) -> Result<Command, HypervisorError> {
    Ok(probe_command_at(&find()?, spec))
}

/// A boot probe with the isola-vmm at `bin`.
pub fn probe_command_at(bin: &Path, spec: &BootSpec) -> Command {
    let mut c = command_at(bin, spec);
    c.args(["--timeout-ms", &spec.timeout.as_millis().to_string()]);
    c
}

/// What a sandbox's isola-vmm is given beyond the boot spec.
pub struct SandboxDevices<'a> {
    /// The hybrid-vsock socket the host reaches the agent on, and the guest's CID.
    pub vsock_uds: &'a Path,
    pub cid: u32,
    pub console: &'a Path,
    /// virtiofsd's vhost-user socket, when the sandbox has a share.
    pub fs_socket: Option<&'a Path>,
    /// (tap name, guest MAC): isola-vmm creates the tap, which goes when it does.
    pub tap: Option<(&'a str, &'a str)>,
}

pub fn sandbox_command(spec: &BootSpec, d: &SandboxDevices<'_>) -> Result<Command, HypervisorError> {
    let mut c = base_command(spec)?;
    c.arg("--vsock-uds").arg(d.vsock_uds).args(["--vsock-cid", &d.cid.to_string()]);
    c.arg("--console").arg(d.console);
    if let Some(sock) = d.fs_socket {
        c.arg("--shared-memory").arg("--fs-socket").arg(sock).args(["--fs-tag", isola_protocol::SHARED_FS_TAG]);
    }
    if let Some((tap, mac)) = d.tap {
        c.args(["--tap", tap, "--mac", mac]);
    }
    Ok(c)
}
