//! The OCI runtime `features` document: what isola accepts in a spec. containerd
//! learns it through the shim's `-info`; the OCI CLI prints the same facts.

use isola_protocol::MOUNT_OPTIONS;
use oci_spec::runtime::Features;

/// OCI runtime-spec versions the agent reads.
pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.2.1";

/// Every capability name (the agent applies the spec's sets inside the VM).
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The document. Facts only: no hooks are run, the guest is cgroup v2 only, seccomp
/// without user notification, no AppArmor or SELinux inside the VM.
pub fn oci_features() -> Features {
    let doc = serde_json::json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": [],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["mount", "pid", "uts", "ipc", "network", "user"],
            "capabilities": CAPABILITIES,
            "cgroup": {"v1": false, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"org.isola.vm": "true", "org.isola.version": env!("CARGO_PKG_VERSION")}
    });
    // The literal above is checked against oci-spec's type by the test below.
    serde_json::from_value(doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_a_valid_features_and_says_what_the_agent_does() {
        let f = oci_features();
        assert_eq!(f.oci_version_min(), OCI_VERSION_MIN, "the literal parsed (a default would be empty)");
        let linux = f.linux().as_ref().expect("linux");
        let ns: Vec<String> = linux.namespaces().iter().flatten().map(|n| format!("{n:?}")).collect();
        assert!(ns.iter().any(|n| n.contains("Pid")) && !ns.iter().any(|n| n.contains("Cgroup")), "{ns:?}");
        assert_eq!(linux.cgroup().as_ref().and_then(|c| *c.v2()), Some(true));
        assert_eq!(linux.cgroup().as_ref().and_then(|c| *c.v1()), Some(false));
        let seccomp = linux.seccomp().as_ref().expect("seccomp");
        let actions: Vec<String> = seccomp.actions().iter().flatten().map(|a| format!("{a:?}")).collect();
        assert!(!actions.iter().any(|a| a.contains("Notify")), "no user notification: {actions:?}");
        assert_eq!(f.hooks().as_deref(), Some(&[][..]), "no hooks run");
        assert_eq!(linux.capabilities().as_ref().map(Vec::len), Some(CAPABILITIES.len()));
    }

    #[test]
    fn the_wire_form_uses_oci_names() {
        let json = serde_json::to_value(oci_features()).expect("serializes");
        assert_eq!(json["mountOptions"].as_array().map(Vec::len), Some(MOUNT_OPTIONS.len()));
        assert_eq!(json["linux"]["seccomp"]["archs"][1], "SCMP_ARCH_X86_64", "OCI names on the wire");
    }
}
