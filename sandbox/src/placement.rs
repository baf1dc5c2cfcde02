//! What sandbox this host gives a request: the one home of the host's policy. A caller
//! (the `isola` CLI, its pool, the task engine under the shim and `isola-runtime`, the
//! template maker) says what it wants in its own terms ([`Request`]); [`Host::place`]
//! decides the rest — the configuration file, the backend for this host's KVM, the VM's
//! size for the container's limits, and whether it restores from a template.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::host::{detect_kvm, KvmKind};
use crate::hypervisor::{choose, BootSpec, HypervisorKind};
use crate::options::{NetworkMode, SandboxOptions, TemplateUse};
use crate::sandbox::{Sandbox, SandboxError};

/// How long a boot may take unless the caller says otherwise.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a caller asks of a sandbox.
#[derive(Clone, Debug)]
pub struct Request {
    pub id: String,
    /// The container's memory limit (the VM gets it plus headroom), else the host's default.
    pub memory_mib: Option<u64>,
    /// vCPUs asked for, and how ([`Vcpus`]); else the host's default.
    pub vcpus: Option<Vcpus>,
    /// A backend the caller insists on (`--hypervisor`), over the configuration's.
    pub hypervisor: Option<HypervisorKind>,
    pub network: NetworkMode,
    pub netns: Option<PathBuf>,
    pub hostname: Option<String>,
    pub cgroup_path: Option<PathBuf>,
    pub sysctls: Vec<(String, String)>,
    pub boot_timeout: Duration,
    pub tie_to_parent: bool,
    /// The state root (default: [`crate::state::default_root`]).
    pub state_root: Option<PathBuf>,
    /// The caller allows a restore from a template (`--no-template` says no); the host's
    /// configuration may still say no.
    pub templates: bool,
    /// Private or LAN networks the sandbox may reach beyond the default (`--network-allow`).
    pub network_allow: Vec<crate::netfilter::Cidr>,
    /// Read-only disks the caller's containers would use (image root filesystems).
    pub disks: Vec<crate::options::DiskAttach>,
    /// The caller needs a virtio-fs share (volumes, a rootfs directory).
    pub shared_fs: bool,
    /// The caller allows a balloon (free page reporting, live resize); `--no-balloon`
    /// says no, and so may the host's configuration.
    pub balloon: bool,
}

impl Request {
    pub fn new(id: impl Into<String>) -> Self {
        Request {
            id: id.into(),
            memory_mib: None,
            vcpus: None,
            hypervisor: None,
            network: NetworkMode::None,
            netns: None,
            hostname: None,
            cgroup_path: None,
            sysctls: vec![],
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
            tie_to_parent: false,
            state_root: None,
            templates: true,
            network_allow: vec![],
            disks: vec![],
            shared_fs: true,
            balloon: true,
        }
    }
}

/// How a request asks for vCPUs: the one rule for every caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vcpus {
    /// A count the user chose (`isola run --cpus`, `isola pool --vcpus`): given as
    /// asked, even beyond this host's CPUs (a test of SMP on a one-CPU host, say).
    Exactly(u8),
    /// Rounded up from a container's CPU limit (an OCI spec's quota): at most this
    /// host's CPUs, since a limit may exceed the node and vCPUs beyond its CPUs would
    /// only cost memory and boot time.
    ForLimit(u8),
}

/// The vCPUs for a CPU limit of `cpus` (1.5 → 2): a guest cannot have part of one.
pub fn vcpus_for(cpus: f64) -> u8 {
    cpus.ceil().clamp(1.0, f64::from(u8::MAX)) as u8
}

/// This host, as placement sees it: its configuration, its KVM, its CPUs.
#[derive(Clone, Debug)]
pub struct Host {
    pub config: Config,
    pub kvm: KvmKind,
    pub cpus: u8,
}

/// A request placed on this host: the options to start, and whether templates are on
/// for it (so a cold boot should leave one behind).
#[derive(Clone, Debug)]
pub struct Placed {
    pub options: SandboxOptions,
    pub templates: bool,
}

impl Host {
    /// The default configuration file ([`crate::config::path`]), or `config` when given.
    pub fn load(config: Option<&Path>) -> Result<Self, ConfigError> {
        let config = match config {
            Some(p) => Config::load_from(p)?,
            None => Config::load()?,
        };
        Ok(Self::with_config(config))
    }

    pub fn with_config(config: Config) -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(64) as u8;
        Host { config, kvm: detect_kvm(), cpus }
    }

    /// The backend a request gets: its own choice, else the configuration's, else the
    /// one this host's KVM runs Linux on.
    pub fn hypervisor(&self, requested: Option<HypervisorKind>) -> HypervisorKind {
        choose(requested.or(self.config.hypervisor), self.kvm)
    }

    /// The VM for a container that asks for `memory_mib` and `vcpus`: the configured
    /// kernel and initramfs, its memory limit plus headroom, and its vCPUs ([`Vcpus`]).
    pub fn boot_spec(&self, memory_mib: Option<u64>, vcpus: Option<Vcpus>, timeout: Duration) -> BootSpec {
        let count = vcpus.map(|v| match v {
            Vcpus::Exactly(n) => n.max(1),
            Vcpus::ForLimit(n) => n.clamp(1, self.cpus.max(1)),
        });
        self.config.boot_spec(memory_mib, count, timeout)
    }

    /// The sandbox this host gives `r`, with its template when one is made and both the
    /// caller and the configuration allow it.
    pub fn place(&self, r: &Request) -> Placed {
        let options = SandboxOptions {
            id: r.id.clone(),
            boot: self.boot_spec(r.memory_mib, r.vcpus, r.boot_timeout),
            hypervisor: self.hypervisor(r.hypervisor),
            kvm: self.kvm,
            state_root: r.state_root.clone().unwrap_or_else(crate::state::default_root),
            tie_to_parent: r.tie_to_parent,
            network: r.network,
            netns: r.netns.clone(),
            hostname: r.hostname.clone(),
            cgroup_path: r.cgroup_path.clone(),
            sysctls: r.sysctls.clone(),
            template: TemplateUse::Off,
            network_allow: self.config.network_allow.iter().chain(&r.network_allow).copied().collect(),
            network_deny: self.config.pod_network_deny.clone(),
            disks: r.disks.clone(),
            shared_fs: r.shared_fs || r.disks.is_empty(),
            balloon: r.balloon && self.config.balloon.unwrap_or(true),
        };
        let templates = r.templates && self.config.templates_on();
        let template = if templates { TemplateUse::find(&options, &crate::template::root()) } else { TemplateUse::Off };
        // The template's key covers its devices (share, disk slots): one found has a
        // placeholder wherever these options have a disk.
        Placed { options: SandboxOptions { template, ..options }, templates }
    }
}

impl Placed {
    pub fn start(&self) -> Result<Sandbox, SandboxError> {
        Sandbox::start(&self.options)
    }

    /// `sb` booted cold where a template could have served: the caller should have one
    /// made (in the background) for the next sandbox of this configuration.
    pub fn wants_template(&self, sb: &Sandbox) -> bool {
        self.templates && sb.state.template.is_none() && self.options.template_key().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(cpus: u8, config: Config) -> Host {
        Host { config, kvm: KvmKind::Missing, cpus }
    }

    #[test]
    fn a_cpu_limit_rounds_up_to_whole_vcpus() {
        assert_eq!((vcpus_for(0.1), vcpus_for(1.0), vcpus_for(1.5), vcpus_for(1e9)), (1, 1, 2, 255));
    }

    #[test]
    fn a_limit_is_capped_at_the_hosts_cpus_a_chosen_count_is_not_and_memory_gets_headroom() {
        let h = host(2, Config::default());
        let mut r = Request::new("s1");
        r.vcpus = Some(Vcpus::ForLimit(8));
        r.memory_mib = Some(512);
        let p = h.place(&r);
        assert_eq!(p.options.boot.vcpus, 2, "a CPU limit gets no more vCPUs than the host has");
        r.vcpus = Some(Vcpus::Exactly(4));
        assert_eq!(h.place(&r).options.boot.vcpus, 4, "a count the user chose is given");
        r.vcpus = Some(Vcpus::ForLimit(0));
        assert_eq!(h.place(&r).options.boot.vcpus, 1);
        r.vcpus = Some(Vcpus::ForLimit(8));
        assert_eq!(p.options.boot.mem_mib, h.config.boot_spec(Some(512), None, DEFAULT_BOOT_TIMEOUT).mem_mib);
        assert!(p.options.boot.mem_mib > 512);
        assert_eq!(p.options.hypervisor, HypervisorKind::Qemu, "no hardware KVM: QEMU");
        r.hypervisor = Some(HypervisorKind::IsolaVmm);
        assert_eq!(h.place(&r).options.hypervisor, HypervisorKind::IsolaVmm, "the caller's choice wins");
    }

    #[test]
    fn templates_need_both_the_caller_and_the_configuration() {
        let mut r = Request::new("s1");
        assert!(host(1, Config::default()).place(&r).templates);
        r.templates = false;
        assert!(!host(1, Config::default()).place(&r).templates);
        r.templates = true;
        let off = Config { templates: Some(false), ..Config::default() };
        let p = host(1, off).place(&r);
        assert!(!p.templates && matches!(p.options.template, TemplateUse::Off));
    }
}
