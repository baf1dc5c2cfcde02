//! The spec's seccomp profile: converted from OCI at create time (so a bad profile is
//! an error reply, not a failed start) and compiled by libseccomp in the container
//! process just before exec.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeccompError {
    #[error("seccomp action {0} is not supported")]
    Unsupported(String),
    #[error("seccomp rule for {0:?}: argument index {1} is beyond the 6 syscall arguments")]
    BadArgIndex(Vec<String>, usize),
    #[error("seccomp: unknown architecture {0}")]
    BadArch(String),
    #[error("seccomp: {0}")]
    Load(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    KillProcess,
    KillThread,
    Trap,
    Errno(u16),
    Trace(u16),
    Log,
    Allow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq(u64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgCmp {
    pub index: u32,
    pub op: Op,
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    pub args: Vec<ArgCmp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub default_action: Action,
    pub architectures: Vec<String>,
    pub rules: Vec<Rule>,
}

const EPERM: u16 = 1;

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<Action, SeccompError> {
    let errno = errno.map_or(EPERM, |e| u16::try_from(e).unwrap_or(EPERM));
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => Action::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => Action::KillProcess,
        LinuxSeccompAction::ScmpActTrap => Action::Trap,
        LinuxSeccompAction::ScmpActErrno => Action::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => Action::Trace(errno),
        LinuxSeccompAction::ScmpActLog => Action::Log,
        LinuxSeccompAction::ScmpActAllow => Action::Allow,
        other => return Err(SeccompError::Unsupported(format!("{other:?}"))),
    })
}

/// Converts the spec's profile; errors name what is not supported.
pub fn from_oci(s: &LinuxSeccomp) -> Result<Profile, SeccompError> {
    let default_action = action(s.default_action(), s.default_errno_ret())?;
    let architectures = s.architectures().iter().flatten().map(|a| format!("{a:?}")).collect();
    let mut rules = Vec::new();
    for sc in s.syscalls().iter().flatten() {
        let names = sc.names().clone();
        let mut args = Vec::new();
        for a in sc.args().iter().flatten() {
            if a.index() >= 6 {
                return Err(SeccompError::BadArgIndex(names, a.index()));
            }
            let op = match a.op() {
                LinuxSeccompOperator::ScmpCmpNe => Op::Ne,
                LinuxSeccompOperator::ScmpCmpLt => Op::Lt,
                LinuxSeccompOperator::ScmpCmpLe => Op::Le,
                LinuxSeccompOperator::ScmpCmpEq => Op::Eq,
                LinuxSeccompOperator::ScmpCmpGe => Op::Ge,
                LinuxSeccompOperator::ScmpCmpGt => Op::Gt,
                LinuxSeccompOperator::ScmpCmpMaskedEq => Op::MaskedEq(a.value()),
            };
            // For MaskedEq the spec's value is the mask and value_two the expected bits.
            let value = if matches!(op, Op::MaskedEq(_)) { a.value_two().unwrap_or(0) } else { a.value() };
            args.push(ArgCmp { index: a.index() as u32, op, value });
        }
        rules.push(Rule { names, action: action(sc.action(), sc.errno_ret())?, args });
    }
    Ok(Profile { default_action, architectures, rules })
}

fn scmp_action(a: Action) -> libseccomp::ScmpAction {
    use libseccomp::ScmpAction as S;
    match a {
        Action::KillProcess => S::KillProcess,
        Action::KillThread => S::KillThread,
        Action::Trap => S::Trap,
        Action::Errno(e) => S::Errno(i32::from(e)),
        Action::Trace(t) => S::Trace(t),
        Action::Log => S::Log,
        Action::Allow => S::Allow,
    }
}

fn scmp_arch(name: &str) -> Result<Option<libseccomp::ScmpArch>, SeccompError> {
    use libseccomp::ScmpArch as A;
    // OCI names: SCMP_ARCH_X86_64 etc.; oci-spec's Debug gives ScmpArchX86_64.
    let n = name.to_ascii_lowercase().replace(['_'], "");
    Ok(Some(match n.trim_start_matches("scmparch") {
        "x8664" => A::X8664,
        "x86" => A::X86,
        "x32" => A::X32,
        // Other architectures cannot run in this guest: nothing to filter.
        "aarch64" | "arm" | "mips" | "mips64" | "mips64n32" | "mipsel" | "mipsel64" | "mipsel64n32" | "ppc"
        | "ppc64" | "ppc64le" | "s390" | "s390x" | "riscv64" => return Ok(None),
        _ => return Err(SeccompError::BadArch(name.into())),
    }))
}

/// Compiles and installs `p` in this process. `set_nnp` lets libseccomp set
/// no_new_privs itself; without it the filter needs CAP_SYS_ADMIN.
pub fn load(p: &Profile, set_nnp: bool) -> Result<(), SeccompError> {
    use libseccomp::{ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
    let e = |what: &str, x: libseccomp::error::SeccompError| SeccompError::Load(format!("{what}: {x}"));
    let mut ctx = ScmpFilterContext::new(scmp_action(p.default_action)).map_err(|x| e("new filter", x))?;
    ctx.set_ctl_nnp(set_nnp).map_err(|x| e("nnp attribute", x))?;
    for a in &p.architectures {
        if let Some(arch) = scmp_arch(a)? {
            if !ctx.is_arch_present(arch).unwrap_or(false) {
                ctx.add_arch(arch).map_err(|x| e("add arch", x))?;
            }
        }
    }
    for r in &p.rules {
        if r.action == p.default_action {
            continue; // libseccomp refuses rules that change nothing
        }
        let cmps: Vec<ScmpArgCompare> = r
            .args
            .iter()
            .map(|a| {
                let op = match a.op {
                    Op::Ne => ScmpCompareOp::NotEqual,
                    Op::Lt => ScmpCompareOp::Less,
                    Op::Le => ScmpCompareOp::LessOrEqual,
                    Op::Eq => ScmpCompareOp::Equal,
                    Op::Ge => ScmpCompareOp::GreaterEqual,
                    Op::Gt => ScmpCompareOp::Greater,
                    Op::MaskedEq(m) => ScmpCompareOp::MaskedEqual(m),
                };
                ScmpArgCompare::new(a.index, op, a.value)
            })
            .collect();
        for name in &r.names {
            // Names this kernel/libseccomp does not know are skipped, as runc does.
            let Ok(sc) = ScmpSyscall::from_name(name) else { continue };
            ctx.add_rule_conditional(scmp_action(r.action), sc, &cmps).map_err(|x| e(name, x))?;
        }
    }
    ctx.load().map_err(|x| e("load", x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

    fn profile(action: LinuxSeccompAction) -> LinuxSeccomp {
        LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(vec!["mkdir".to_string(), "mkdirat".to_string()])
                .action(action)
                .errno_ret(13u32)
                .args(vec![LinuxSeccompArgBuilder::default()
                    .index(1usize)
                    .value(0o700u64)
                    .value_two(0o700u64)
                    .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                    .build()
                    .expect("arg")])
                .build()
                .expect("syscall")])
            .build()
            .expect("seccomp")
    }

    #[test]
    fn oci_profiles_convert_with_errnos_and_masked_compares() {
        let p = from_oci(&profile(LinuxSeccompAction::ScmpActErrno)).expect("convert");
        assert_eq!(p.default_action, Action::Allow);
        assert_eq!(p.rules[0].action, Action::Errno(13));
        assert_eq!(p.rules[0].args, vec![ArgCmp { index: 1, op: Op::MaskedEq(0o700), value: 0o700 }]);
    }

    #[test]
    fn unsupported_actions_and_bad_indexes_are_named() {
        let e = from_oci(&profile(LinuxSeccompAction::ScmpActNotify)).expect_err("notify");
        assert!(e.to_string().contains("not supported"), "{e}");
        let mut s = profile(LinuxSeccompAction::ScmpActErrno);
        let mut sc = s.syscalls().clone().expect("calls");
        sc[0].set_args(Some(vec![LinuxSeccompArgBuilder::default()
            .index(7usize)
            .value(0u64)
            .op(LinuxSeccompOperator::ScmpCmpEq)
            .build()
            .expect("arg")]));
        s.set_syscalls(Some(sc));
        assert!(matches!(from_oci(&s), Err(SeccompError::BadArgIndex(_, 7))));
        assert!(matches!(scmp_arch("SCMP_ARCH_PDP11"), Err(SeccompError::BadArch(_))));
        assert!(matches!(scmp_arch("ScmpArchX86_64"), Ok(Some(_))));
    }

    /// Loads a real filter in a forked child: mkdir fails with the profile's errno, and
    /// getpriority is refused only for the argument the rule names.
    #[test]
    fn a_loaded_filter_returns_the_profiles_errno() {
        let mut p = from_oci(&profile(LinuxSeccompAction::ScmpActErrno)).expect("convert");
        p.rules[0].args.clear();
        p.rules.push(Rule {
            names: vec!["getpriority".into()],
            action: Action::Errno(13),
            args: vec![ArgCmp { index: 0, op: Op::Eq, value: libc::PRIO_PGRP as u64 }],
        });
        let dir = tempfile::tempdir().expect("tmp");
        // SAFETY: the child only makes syscalls and exits; it never returns into the test harness.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = match load(&p, true) {
                    Err(_) => 2,
                    Ok(()) => {
                        let denied = std::fs::create_dir(dir.path().join("a")).map_err(|e| e.raw_os_error());
                        // SAFETY: getpriority takes two integers and touches no memory.
                        let (proc_ok, pgrp) = unsafe {
                            (libc::getpriority(libc::PRIO_PROCESS, 0), libc::getpriority(libc::PRIO_PGRP, 0))
                        };
                        let pgrp_errno = std::io::Error::last_os_error().raw_os_error();
                        match (denied, proc_ok, pgrp, pgrp_errno) {
                            // Any niceness (the test may run under `nice`), but not the refusal.
                            (Err(Some(13)), -20..=19, -1, Some(13)) if proc_ok != -1 => 0,
                            _ => 3,
                        }
                    }
                };
                // SAFETY: _exit is always safe; it skips the parent's atexit handlers.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
