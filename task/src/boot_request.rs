//! What the first container of a pod asks of its VM, and the sandbox options that
//! makes on this host: shared by the booter ([`crate::guest`]) and the detached
//! template maker ([`crate::template_maker`]).

use std::path::PathBuf;
use std::time::Duration;

use isola_sandbox::sandbox::{NetworkMode, SandboxOptions, TemplateUse};
use isola_sandbox::{choose, detect_kvm};

use crate::error::TaskError;

/// What the first container of a pod tells about the VM to boot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BootRequest {
    /// The VM's (sandbox's) name: short, valid as a path component.
    pub name: String,
    pub hostname: String,
    /// The pod's network namespace, when CNI made one.
    pub netns: Option<PathBuf>,
    /// The container's memory limit and CPU count, if it sets them.
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u8>,
    /// `ConfigPath` from containerd's runtime options.
    pub config_path: Option<PathBuf>,
    /// The owning container's `linux.cgroupsPath`, as a path below the host's cgroup
    /// root: the VMM and its helpers run there (in the pod's cgroup under CRI).
    pub cgroup_path: Option<PathBuf>,
    /// The pod sandbox's sysctls (CRI puts a pod's there), for the VM's namespaces.
    pub sysctls: Vec<(String, String)>,
}

/// The host configuration the request names (its `ConfigPath`), or the default one.
pub fn host_config(r: &BootRequest) -> Result<isola_sandbox::config::Config, TaskError> {
    match &r.config_path {
        Some(p) => isola_sandbox::config::Config::load_from(p),
        None => isola_sandbox::config::Config::load(),
    }
    .map_err(|e| TaskError::Config(e.to_string()))
}

/// The sandbox a request asks for, on this host (no template chosen yet).
pub fn options(r: &BootRequest, cfg: &isola_sandbox::config::Config, tie_to_parent: bool) -> SandboxOptions {
    let kvm = detect_kvm();
    let host_cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(64) as u8;
    let mut boot = cfg.boot_spec(r.memory_mib, r.vcpus, Duration::from_secs(60));
    boot.vcpus = boot.vcpus.clamp(1, host_cpus.max(1));
    SandboxOptions {
        id: r.name.clone(),
        boot,
        hypervisor: choose(cfg.hypervisor, kvm),
        kvm,
        state_root: isola_sandbox::state::default_root(),
        tie_to_parent,
        // Without a pod namespace a container has loopback only, as with runc.
        network: NetworkMode::None,
        netns: r.netns.clone(),
        hostname: Some(r.hostname.clone()),
        cgroup_path: r.cgroup_path.clone(),
        sysctls: r.sysctls.clone(),
        template: TemplateUse::Off,
    }
}
