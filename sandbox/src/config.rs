//! Host configuration: `/etc/isola/config.toml` (or `$ISOLA_CONFIG`). Every key is
//! optional; what is set replaces the built-in default, and unknown keys are errors
//! (a typo should not be silently ignored).
//!
//! ```toml
//! kernel = "/var/lib/isola/guest/bzImage"
//! initramfs = "/var/lib/isola/guest/initramfs.cpio"
//! hypervisor = "qemu"          # or "isola-vmm"
//! memory_mib = 256
//! vcpus = 1
//! log_level = "info"
//! templates = true             # isola-vmm: restore runs from templates, make them
//! sandbox_uids = { first = 1879048192, count = 65536 }   # one host uid per sandbox
//! network_allow = ["10.20.0.0/16"]   # private ranges sandboxes may reach (default none)
//! pod_network_deny = ["192.168.0.0/16", "169.254.169.254/32"]   # never, from a CNI pod
//!
//! [registry_mirrors]            # tried in order before the registry itself
//! "docker.io" = ["mirror.example:5000"]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::hypervisor::{BootSpec, HypervisorKind, QemuAccel, DEFAULT_CMDLINE};

/// Guest memory beyond a container's own limit: kernel, agent, page cache.
pub const VM_HEADROOM_MIB: u64 = 128;
pub const MIN_VM_MIB: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kernel: Option<PathBuf>,
    pub initramfs: Option<PathBuf>,
    pub hypervisor: Option<HypervisorKind>,
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u8>,
    pub log_level: Option<String>,
    /// Whether isola-vmm sandboxes restore from templates and make the ones missing
    /// (default: yes).
    pub templates: Option<bool>,
    /// Registry host → mirrors to pull from first (`docker.io` → a local mirror).
    #[serde(default)]
    pub registry_mirrors: std::collections::BTreeMap<String, Vec<String>>,
    /// The host uids given to sandboxes, one each (default: 65536 from 0x70000000).
    pub sandbox_uids: Option<crate::identity::Range>,
    /// Private or LAN networks every sandbox on the bridge may reach (default: none;
    /// the internet is always reachable, private ranges and the host's LAN are not).
    #[serde(default)]
    pub network_allow: Vec<crate::netfilter::Cidr>,
    /// Networks that sandboxes in a pod's CNI namespace (the shim under Kubernetes) may
    /// never reach, on top of the CNI's own policy (default: none; the node's LAN or a
    /// metadata address are typical).
    #[serde(default)]
    pub pod_network_deny: Vec<crate::netfilter::Cidr>,
    /// Whether sandboxes get a balloon: free page reporting and live memory resize
    /// (default: yes).
    pub balloon: Option<bool>,
}

pub fn path() -> PathBuf {
    std::env::var_os("ISOLA_CONFIG").map(PathBuf::from).unwrap_or_else(|| "/etc/isola/config.toml".into())
}

impl Config {
    /// Whether isola-vmm sandboxes restore and make templates (unless `templates = false`).
    pub fn templates_on(&self) -> bool {
        self.templates != Some(false)
    }

    /// The configuration at [`path`]; a missing file means all defaults.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(&path())
    }

    pub fn load_from(p: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(ConfigError::Read { path: p.display().to_string(), source }),
        };
        Self::parse(&text).map_err(|reason| ConfigError::Parse { path: p.display().to_string(), reason })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if c.vcpus == Some(0) {
            return Err("vcpus must be at least 1".into());
        }
        if let Some(r) = &c.sandbox_uids {
            r.validate().map_err(|e| e.to_string())?;
        }
        Ok(c)
    }

    pub fn kernel(&self) -> PathBuf {
        self.kernel.clone().unwrap_or_else(crate::assets::default_kernel)
    }

    pub fn initramfs(&self) -> PathBuf {
        self.initramfs.clone().unwrap_or_else(crate::assets::default_initrd)
    }

    /// The VM for a container that asks for `memory_mib` and `vcpus`: its memory limit
    /// plus headroom (at least [`MIN_VM_MIB`]), else this file's defaults.
    pub fn boot_spec(&self, memory_mib: Option<u64>, vcpus: Option<u8>, timeout: Duration) -> BootSpec {
        BootSpec {
            kernel: self.kernel(),
            initrd: Some(self.initramfs()),
            cmdline: DEFAULT_CMDLINE.into(),
            mem_mib: memory_mib.map(|m| m + VM_HEADROOM_MIB).or(self.memory_mib).unwrap_or(0).max(MIN_VM_MIB),
            vcpus: vcpus.or(self.vcpus).unwrap_or(1),
            timeout,
            accel: QemuAccel::Auto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_mistakes_are_named() {
        let c =
            Config::parse("kernel = \"/k\"\nhypervisor = \"isola-vmm\"\nmemory_mib = 512\nvcpus = 2\n").expect("ok");
        assert_eq!(c.kernel(), PathBuf::from("/k"));
        assert_eq!((c.hypervisor, c.memory_mib, c.vcpus), (Some(HypervisorKind::IsolaVmm), Some(512), Some(2)));
        assert_eq!(Config::parse("").expect("empty"), Config::default());
        let e = Config::parse("kernal = \"/k\"").expect_err("typo");
        assert!(e.contains("unknown field `kernal`"), "{e}");
        let e = Config::parse("hypervisor = \"xen\"").expect_err("bad backend");
        assert!(e.contains("unknown variant `xen`"), "{e}");
        assert_eq!(Config::parse("vcpus = 0").expect_err("zero"), "vcpus must be at least 1");
        let c = Config::parse("network_allow = [\"10.1.0.0/16\"]").expect("allow");
        assert_eq!(c.network_allow[0].to_string(), "10.1.0.0/16");
        let c = Config::parse("pod_network_deny = [\"169.254.169.254\"]").expect("deny");
        assert_eq!(c.pod_network_deny[0].to_string(), "169.254.169.254/32");
        let e = Config::parse("network_allow = [\"10.1.0.0/40\"]").expect_err("bad network");
        assert!(e.contains("10.1.0.0/40"), "{e}");
        let c = Config::parse("sandbox_uids = { first = 300000, count = 10 }").expect("uids");
        assert_eq!(c.sandbox_uids, Some(crate::identity::Range { first: 300000, count: 10 }));
        let e = Config::parse("sandbox_uids = { first = 65530, count = 10 }").expect_err("nobody");
        assert!(e.contains("65534"), "{e}");
        let c = Config::parse("[registry_mirrors]\n\"docker.io\" = [\"127.0.0.1:5000\"]\n").expect("mirrors");
        assert_eq!(c.registry_mirrors["docker.io"], ["127.0.0.1:5000"]);
    }

    #[test]
    fn the_vm_is_the_limit_plus_headroom_or_the_configured_default() {
        let c = Config::parse("memory_mib = 512\nvcpus = 2\n").expect("ok");
        let t = Duration::from_secs(1);
        assert_eq!((c.boot_spec(None, None, t).mem_mib, c.boot_spec(None, None, t).vcpus), (512, 2));
        assert_eq!(c.boot_spec(Some(300), Some(3), t).mem_mib, 300 + VM_HEADROOM_MIB);
        assert_eq!(c.boot_spec(Some(300), Some(3), t).vcpus, 3);
        assert_eq!(c.boot_spec(Some(16), None, t).mem_mib, MIN_VM_MIB);
        assert_eq!(Config::default().boot_spec(None, None, t).mem_mib, MIN_VM_MIB);
    }

    #[test]
    fn a_missing_file_is_all_defaults() {
        assert_eq!(Config::load_from(Path::new("/nonexistent/isola.toml")).expect("defaults"), Config::default());
    }
}
