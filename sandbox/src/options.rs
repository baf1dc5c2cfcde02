//! What a caller asks of a new sandbox ([`crate::sandbox::Sandbox::start`]).

use std::path::PathBuf;

use crate::host::KvmKind;
use crate::hypervisor::{BootSpec, HypervisorKind};

/// What to start.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    pub id: String,
    pub boot: BootSpec,
    pub hypervisor: HypervisorKind,
    pub kvm: KvmKind,
    pub state_root: PathBuf,
    /// Kill the VMM and its helpers if the starting process dies (foreground runs).
    pub tie_to_parent: bool,
    pub network: NetworkMode,
    /// A pod's network namespace (from the OCI spec, set up by CNI): the VMM runs in it
    /// and the guest takes over its interface. Overrides `network`.
    pub netns: Option<PathBuf>,
    /// The guest's hostname (default: the sandbox's id).
    pub hostname: Option<String>,
    /// Where the sandbox's processes go in the host's cgroup tree, below its root (a
    /// pod's `cgroupsPath`, so the pod's limits and accounting hold the VM); default
    /// `isola/<name>-<hash>`.
    pub cgroup_path: Option<PathBuf>,
    /// The pod's sysctls (name, value), applied in the guest's shared namespaces.
    pub sysctls: Vec<(String, String)>,
    /// Boot, or restore from a template ([`crate::template`]).
    pub template: TemplateUse,
    /// Private or LAN networks a sandbox on the bridge may reach (closed by default:
    /// [`crate::netfilter`]), the host's `network_allow` and the request's together.
    pub network_allow: Vec<crate::netfilter::Cidr>,
    /// Networks a sandbox in a pod's CNI namespace may never reach (the host's
    /// `pod_network_deny`): on top of the CNI's own policy.
    pub network_deny: Vec<crate::netfilter::Cidr>,
    /// Read-only disks for the guest (virtio-blk): image root filesystems.
    pub disks: Vec<DiskAttach>,
    /// Whether the sandbox gets a virtio-fs share (and its virtiofsd): off when its
    /// containers' root filesystems are disks and nothing else is shared.
    pub shared_fs: bool,
    /// A virtio-balloon device: pages the guest frees go back to the host (free page
    /// reporting), and `isola update -m` can take memory back from a running guest.
    pub balloon: bool,
}

pub use crate::disk::DiskAttach;

/// Whether a sandbox starts from a template snapshot (isola-vmm only).
#[derive(Clone, Debug, Default)]
pub enum TemplateUse {
    /// Always a cold boot.
    #[default]
    Off,
    /// Restored from this one; if that fails, it is removed and the sandbox boots cold.
    Restore(crate::template::Template),
    /// Booted cold to become a template: isola-vmm serves its control API and
    /// snapshots into this directory, and the guest is left unconfigured.
    Make(PathBuf),
}

impl TemplateUse {
    /// The template for `opts`' configuration when one is made under `root`.
    pub fn find(opts: &SandboxOptions, root: &std::path::Path) -> Self {
        opts.template_key()
            .ok()
            .and_then(|k| crate::template::find(root, &k))
            .map_or(TemplateUse::Off, TemplateUse::Restore)
    }
}

impl SandboxOptions {
    /// A sandbox `id` booting `boot` on `hypervisor`, under the default state root, tied
    /// to its caller, with no network of its own choosing, no template and nothing else
    /// asked (callers that need more change it with `..`).
    pub fn new(id: impl Into<String>, boot: BootSpec, hypervisor: HypervisorKind, kvm: KvmKind) -> Self {
        SandboxOptions {
            id: id.into(),
            boot,
            hypervisor,
            kvm,
            state_root: crate::state::default_root(),
            tie_to_parent: true,
            network: NetworkMode::default(),
            netns: None,
            hostname: None,
            cgroup_path: None,
            sysctls: vec![],
            template: TemplateUse::Off,
            network_allow: vec![],
            network_deny: vec![],
            disks: vec![],
            shared_fs: true,
            balloon: true,
        }
    }

    /// The devices a template for these options has.
    pub fn template_devices(&self) -> crate::template::Devices {
        let net = self.network != NetworkMode::None || self.netns.is_some();
        crate::template::Devices::detect(net, self.shared_fs, self.disks.len(), self.balloon)
    }

    /// The key of the template these options would restore (isola-vmm only).
    pub fn template_key(&self) -> Result<String, crate::template::TemplateError> {
        crate::template::key(self.hypervisor, &self.boot, self.template_devices())
    }
}

/// Options for unit tests: QEMU, no network, a fake kernel in `dir`.
#[cfg(test)]
pub(crate) fn test_options(dir: &std::path::Path) -> SandboxOptions {
    SandboxOptions {
        state_root: dir.join("state"),
        network: NetworkMode::None,
        ..SandboxOptions::new("t", crate::hypervisor::test_spec(dir), HypervisorKind::Qemu, KvmKind::Missing)
    }
}

/// `--network`: none (loopback only) or the `isola0` bridge with NAT (`auto` is the
/// bridge; it stays as the place to pick CNI when the shim passes a namespace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    None,
    Bridge,
    #[default]
    Auto,
}

impl std::fmt::Display for NetworkMode {
    /// As `--network` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Bridge => "bridge",
            Self::Auto => "auto",
        })
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "bridge" => Ok(Self::Bridge),
            "auto" => Ok(Self::Auto),
            other => Err(format!("--network takes none, bridge or auto, not {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_templates_key_follows_the_network_and_only_isola_vmm_has_one() {
        let d = tempfile::tempdir().expect("tmp");
        let mut o = test_options(d.path());
        assert!(o.template_key().is_err(), "QEMU restores no template");
        assert!(matches!(TemplateUse::find(&o, d.path()), TemplateUse::Off));
        o.hypervisor = HypervisorKind::IsolaVmm;
        assert!(!o.template_devices().net);
        let none = o.template_key().expect("isola-vmm is built beside the tests");
        o.network = NetworkMode::Bridge;
        assert!(o.template_devices().net);
        assert_ne!(o.template_key().expect("key"), none);
        // What makes no difference to the guest does not split templates.
        let named = SandboxOptions { id: "other".into(), hostname: Some("h".into()), ..o.clone() };
        assert_eq!(named.template_key().expect("key"), o.template_key().expect("key"));
        assert!(matches!(TemplateUse::find(&o, d.path()), TemplateUse::Off), "none made there");
    }
}
