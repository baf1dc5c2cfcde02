//! What virtualization this host offers.

use std::path::Path;

/// The kind of `/dev/kvm` here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvmKind {
    /// VMX/SVM-backed KVM: real Linux guests boot at native speed.
    Hardware,
    /// PVM (`kvm_pvm`): software virtualization; guest ring-0 code is emulated, so
    /// only PVM-aware kernels or tiny test guests are practical.
    Pvm,
    /// No usable /dev/kvm.
    Missing,
}

impl KvmKind {
    pub fn describe(self) -> &'static str {
        match self {
            KvmKind::Hardware => "hardware KVM",
            KvmKind::Pvm => "PVM (kvm_pvm: software virtualization, guest ring 0 is emulated)",
            KvmKind::Missing => "no /dev/kvm",
        }
    }
}

/// Looks at `/dev/kvm` and the loaded KVM modules under `root` ("/" on a real host).
pub fn detect_kvm_at(root: &Path) -> KvmKind {
    let dev = root.join("dev/kvm");
    if !dev.exists() {
        return KvmKind::Missing;
    }
    if root.join("sys/module/kvm_pvm").exists() {
        return KvmKind::Pvm;
    }
    KvmKind::Hardware
}

pub fn detect_kvm() -> KvmKind {
    detect_kvm_at(Path::new("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(dev_kvm: bool, pvm: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tmp");
        if dev_kvm {
            std::fs::create_dir_all(d.path().join("dev")).expect("dev");
            std::fs::write(d.path().join("dev/kvm"), "").expect("kvm");
        }
        if pvm {
            std::fs::create_dir_all(d.path().join("sys/module/kvm_pvm")).expect("pvm");
        }
        d
    }

    #[test]
    fn detects_each_kind() {
        assert_eq!(detect_kvm_at(fake_root(false, false).path()), KvmKind::Missing);
        assert_eq!(detect_kvm_at(fake_root(true, true).path()), KvmKind::Pvm);
        assert_eq!(detect_kvm_at(fake_root(true, false).path()), KvmKind::Hardware);
        assert_eq!(detect_kvm_at(fake_root(false, true).path()), KvmKind::Missing, "module without device");
    }
}
