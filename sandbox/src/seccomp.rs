//! The seccomp profile `isola run` containers get unless the user asks otherwise: in
//! the spirit of Docker's default, it refuses with EPERM what a container has no
//! business calling inside a sandbox — kernel modules, kexec, keyrings, BPF, perf,
//! userfaultfd, io_uring, new mounts and namespaces, ptrace of other processes, clock
//! changes — and vsock sockets, the guest's channel to its agent.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator,
    LinuxSyscallBuilder,
};

/// `CLONE_NEWUSER`: a new user namespace, the door to the guest kernel's namespaced
/// attack surface, refused as `unshare` is.
pub const CLONE_NEWUSER: u64 = 0x1000_0000;
const ENOSYS: u32 = 38;

/// `AF_VSOCK`, the address family of the guest's host channel.
pub const AF_VSOCK: u64 = 40;
const EPERM: u32 = 1;

/// Syscalls refused outright (names unknown on an architecture are skipped by the agent).
pub const REFUSED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
];

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("building the default seccomp profile: {0}")]
    Build(String),
    #[error("seccomp profile {path}: {reason}")]
    File { path: String, reason: String },
}

/// What `--security-opt seccomp=…` chose.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Seccomp {
    #[default]
    Default,
    /// No filter at all (for debugging; says so where it is chosen).
    Unconfined,
    /// An OCI (or Docker-format) profile from a file.
    Profile(Box<LinuxSeccomp>),
}

impl Seccomp {
    /// `unconfined`, or the path of a JSON profile.
    pub fn parse(value: &str) -> Result<Self, SeccompError> {
        if value == "unconfined" {
            return Ok(Seccomp::Unconfined);
        }
        let bad = |reason: String| SeccompError::File { path: value.into(), reason };
        let text = std::fs::read_to_string(value).map_err(|e| bad(e.to_string()))?;
        let p: LinuxSeccomp = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        Ok(Seccomp::Profile(Box::new(p)))
    }

    /// The profile to put in the spec, if any.
    pub fn profile(&self) -> Result<Option<LinuxSeccomp>, SeccompError> {
        match self {
            Seccomp::Default => default_profile().map(Some),
            Seccomp::Unconfined => Ok(None),
            Seccomp::Profile(p) => Ok(Some((**p).clone())),
        }
    }
}

/// Everything allowed but [`REFUSED`], `socket`/`socketpair` of `AF_VSOCK`, and
/// `clone` with [`CLONE_NEWUSER`]; `clone3`, whose flags a filter cannot read, is
/// answered ENOSYS so libc falls back to `clone` (as Docker's default does).
pub fn default_profile() -> Result<LinuxSeccomp, SeccompError> {
    let build = |e: oci_spec::OciSpecError| SeccompError::Build(e.to_string());
    let refused = LinuxSyscallBuilder::default()
        .names(REFUSED.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(EPERM)
        .build()
        .map_err(build)?;
    let vsock_arg = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(AF_VSOCK)
        .op(LinuxSeccompOperator::ScmpCmpEq)
        .build()
        .map_err(build)?;
    let vsock = LinuxSyscallBuilder::default()
        .names(vec!["socket".to_string(), "socketpair".to_string()])
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(EPERM)
        .args(vec![vsock_arg])
        .build()
        .map_err(build)?;
    let userns_arg = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(CLONE_NEWUSER)
        .value_two(CLONE_NEWUSER)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()
        .map_err(build)?;
    let userns = LinuxSyscallBuilder::default()
        .names(vec!["clone".to_string()])
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(EPERM)
        .args(vec![userns_arg])
        .build()
        .map_err(build)?;
    let clone3 = LinuxSyscallBuilder::default()
        .names(vec!["clone3".to_string()])
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(ENOSYS)
        .build()
        .map_err(build)?;
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32])
        .syscalls(vec![refused, vsock, userns, clone3])
        .build()
        .map_err(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_refuses_vsock_sockets_and_dangerous_calls() {
        let p = default_profile().expect("profile");
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        let rules = p.syscalls().as_ref().expect("rules");
        let vsock = rules.iter().find(|r| r.names().contains(&"socket".to_string())).expect("socket rule");
        let arg = &vsock.args().as_ref().expect("args")[0];
        assert_eq!((arg.index(), arg.value(), arg.op()), (0, AF_VSOCK, LinuxSeccompOperator::ScmpCmpEq));
        assert_eq!(vsock.action(), LinuxSeccompAction::ScmpActErrno);
        let userns = rules.iter().find(|r| r.names() == &["clone".to_string()]).expect("clone rule");
        let arg = &userns.args().as_ref().expect("args")[0];
        assert_eq!(
            (arg.value(), arg.value_two(), arg.op()),
            (CLONE_NEWUSER, Some(CLONE_NEWUSER), LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
        let clone3 = rules.iter().find(|r| r.names() == &["clone3".to_string()]).expect("clone3 rule");
        assert_eq!(clone3.errno_ret(), Some(ENOSYS), "libc falls back to clone");
        let refused = &rules[0];
        for name in ["kexec_load", "init_module", "bpf", "ptrace", "mount", "unshare", "io_uring_setup"] {
            assert!(refused.names().contains(&name.to_string()), "{name}");
        }
    }

    #[test]
    fn choices_parse_and_bad_files_are_named() {
        assert_eq!(Seccomp::parse("unconfined").expect("unconfined"), Seccomp::Unconfined);
        assert!(Seccomp::Unconfined.profile().expect("none").is_none());
        let e = Seccomp::parse("/nonexistent/profile.json").expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/profile.json"), "{e}");
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("p.json");
        std::fs::write(&f, serde_json::to_string(&default_profile().expect("p")).expect("json")).expect("write");
        let Seccomp::Profile(p) = Seccomp::parse(f.to_str().expect("utf8")).expect("file") else { panic!("profile") };
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
    }
}
