//! Which VMM runs a sandbox, and the one description of what to boot; each backend
//! program's own command line lives in `backend/`.

use std::path::PathBuf;
use std::time::Duration;

use crate::host::KvmKind;

/// Which VMM runs the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HypervisorKind {
    /// Our own KVM VMM.
    IsolaVmm,
    /// QEMU `-M microvm`: KVM where it is hardware-backed, TCG elsewhere.
    Qemu,
}

impl std::str::FromStr for HypervisorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "isola-vmm" | "isola" => Ok(Self::IsolaVmm),
            "qemu" => Ok(Self::Qemu),
            other => Err(format!("unknown hypervisor {other:?} (expected isola-vmm or qemu)")),
        }
    }
}

impl std::fmt::Display for HypervisorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::IsolaVmm => "isola-vmm",
            Self::Qemu => "qemu",
        })
    }
}

/// isola-vmm on hardware KVM; QEMU where KVM is missing or is PVM (a stock Linux
/// guest cannot boot under PVM). An explicit choice always wins.
pub fn choose(requested: Option<HypervisorKind>, kvm: KvmKind) -> HypervisorKind {
    requested.unwrap_or(match kvm {
        KvmKind::Hardware => HypervisorKind::IsolaVmm,
        KvmKind::Pvm | KvmKind::Missing => HypervisorKind::Qemu,
    })
}

/// Why [`choose`] picks what it picks, in words for `isola info`.
pub fn choice_reason(requested: Option<HypervisorKind>, kvm: KvmKind) -> &'static str {
    match (requested, kvm) {
        (Some(_), _) => "set by `hypervisor` in the configuration",
        (None, KvmKind::Hardware) => "hardware KVM is available, so isola's own VMM runs every guest",
        (None, KvmKind::Pvm) => "/dev/kvm is PVM, where a stock Linux guest cannot boot; QEMU runs guests under TCG",
        (None, KvmKind::Missing) => "there is no /dev/kvm; QEMU runs guests under TCG",
    }
}

/// QEMU's accelerator. `Auto` is KVM on hardware KVM and TCG elsewhere: a stock Linux
/// guest cannot run under PVM, but the tiny test guests can, so the benchmark asks for
/// KVM explicitly to compare like with like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QemuAccel {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for QemuAccel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            other => Err(format!("unknown accelerator {other:?} (expected auto, kvm or tcg)")),
        }
    }
}

/// What to boot: the same inputs for every backend.
#[derive(Clone, Debug)]
pub struct BootSpec {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub mem_mib: u64,
    pub vcpus: u8,
    pub timeout: Duration,
    pub accel: QemuAccel,
}

impl BootSpec {
    /// What a cache of booted guests is keyed on: the kernel and initramfs by path, size
    /// and modification time (a rebuilt guest never matches an old entry), the command
    /// line, memory and vCPUs.
    pub fn identity(&self) -> String {
        use crate::names::file_id;
        let initrd = self.initrd.as_deref().map(file_id).unwrap_or_default();
        format!("{}|{initrd}|{}|{}|{}", file_id(&self.kernel), self.cmdline, self.mem_mib, self.vcpus)
    }
}

/// The default guest command line: serial console, reset on reboot and panic.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 quiet";

/// For boot probes and benchmarks: the agent prints its ready marker and powers off.
pub const BOOT_PROBE_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 quiet isola.oneshot";

#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    #[error("{0} not found next to this program or on PATH{1}")]
    MissingBinary(&'static str, &'static str),
    #[error("invalid boot spec: {0}")]
    Spec(String),
}

impl BootSpec {
    pub fn validate(&self) -> Result<(), HypervisorError> {
        if !self.kernel.is_file() {
            return Err(HypervisorError::Spec(format!("kernel {} does not exist", self.kernel.display())));
        }
        if let Some(rd) = &self.initrd {
            if !rd.is_file() {
                return Err(HypervisorError::Spec(format!("initramfs {} does not exist", rd.display())));
            }
        }
        if self.vcpus == 0 {
            return Err(HypervisorError::Spec("vcpus must be at least 1".into()));
        }
        if self.mem_mib < 16 {
            return Err(HypervisorError::Spec(format!("{} MiB of memory is too little (at least 16)", self.mem_mib)));
        }
        Ok(())
    }
}

/// A valid spec whose kernel is a dummy file in `dir` (unit tests).
#[cfg(test)]
pub(crate) fn test_spec(dir: &std::path::Path) -> BootSpec {
    let k = dir.join("vmlinux");
    std::fs::write(&k, b"k").expect("kernel");
    BootSpec {
        kernel: k,
        initrd: None,
        cmdline: "console=ttyS0".into(),
        mem_mib: 128,
        vcpus: 2,
        timeout: Duration::from_secs(5),
        accel: QemuAccel::Auto,
    }
}

#[cfg(test)]
mod tests {
    use super::test_spec as spec;
    use super::*;

    #[test]
    fn automatic_choice_follows_the_host() {
        assert_eq!(choose(None, KvmKind::Hardware), HypervisorKind::IsolaVmm);
        assert_eq!(choose(None, KvmKind::Pvm), HypervisorKind::Qemu);
        assert_eq!(choose(None, KvmKind::Missing), HypervisorKind::Qemu);
        assert!(choice_reason(None, KvmKind::Pvm).contains("PVM"));
        assert!(choice_reason(Some(HypervisorKind::Qemu), KvmKind::Hardware).contains("configuration"));
        assert_eq!(choose(Some(HypervisorKind::IsolaVmm), KvmKind::Pvm), HypervisorKind::IsolaVmm);
    }

    #[test]
    fn names_parse_and_print() {
        assert_eq!("qemu".parse::<HypervisorKind>(), Ok(HypervisorKind::Qemu));
        assert_eq!("isola-vmm".parse::<HypervisorKind>(), Ok(HypervisorKind::IsolaVmm));
        assert!("xen".parse::<HypervisorKind>().expect_err("unknown").contains("xen"));
        assert_eq!(HypervisorKind::IsolaVmm.to_string(), "isola-vmm");
    }

    #[test]
    fn bad_specs_are_named() {
        let d = tempfile::tempdir().expect("tmp");
        let mut s = spec(d.path());
        s.vcpus = 0;
        assert!(s.validate().expect_err("invalid").to_string().contains("vcpus"));
        let mut s = spec(d.path());
        s.kernel = "/nonexistent/k".into();
        assert!(s.validate().expect_err("invalid").to_string().contains("/nonexistent/k"));
        let mut s = spec(d.path());
        s.mem_mib = 1;
        assert!(s.validate().expect_err("invalid").to_string().contains("1 MiB"));
    }
}
