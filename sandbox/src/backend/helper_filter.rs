//! The seccomp filter every host process of a sandbox runs under that brings none of
//! its own strict enough (vhost-device-vsock, the console pump, the port forwarder;
//! stacked under QEMU's own `-sandbox`): it is installed between fork and exec, so
//! the program never runs a moment without it, and it refuses what a helper taken
//! over by its guest would use to reach further — tracing or reading other processes
//! (ptrace, process_vm_*: QEMU's filter allows them), namespaces and mounts, BPF,
//! perf, keyrings, io_uring, userfaultfd, modules, kexec, clocks, handles to host
//! files by inode. None of the helpers calls any of them.
//!
//! A deny-list, not an allow-list: vhost-device-vsock and QEMU are third-party
//! programs whose exact calls change with their versions and libc; what they may never
//! need is stable. Our own helpers add an allow-list of their own once started
//! ([`super::own_filter`]). See docs/security.md.

use std::os::unix::process::CommandExt;
use std::process::Command;

use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};

#[derive(Debug, thiserror::Error)]
#[error("the helpers' seccomp filter: {0}")]
pub struct HelperFilterError(String);

fn err(e: impl std::fmt::Display) -> HelperFilterError {
    HelperFilterError(e.to_string())
}

/// Refused for every helper.
const REFUSED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_acct,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_lookup_dcookie,
    libc::SYS_mknod,
    libc::SYS_mknodat,
];

/// Refused for the helpers, but QEMU's own filter governs them for QEMU: it needs
/// chroot and the id changes of `-chroot`/`-runas`, and may probe io_uring.
const REFUSED_BUT_FOR_QEMU: &[i64] = &[
    libc::SYS_chroot,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setfsuid,
    libc::SYS_setfsgid,
    libc::SYS_setgroups,
    libc::SYS_capset,
];

/// clone's flags that make namespaces: a thread or fork goes, a new namespace does not.
const NEW_NAMESPACES: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// Who the filter is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum For {
    /// A helper, installed after it dropped to the sandbox's uid.
    Helper,
    /// QEMU, installed while it is still root (it chroots and drops later itself).
    Qemu,
}

/// The two filters for `who` (installed in this order).
pub fn program(who: For) -> Result<[seccompiler::BpfProgram; 2], HelperFilterError> {
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = std::collections::BTreeMap::new();
    let extra: &[i64] = if who == For::Helper { REFUSED_BUT_FOR_QEMU } else { &[] };
    for &nr in REFUSED.iter().chain(extra) {
        rules.insert(nr, vec![]);
    }
    let mut clone = Vec::new();
    for bit in NEW_NAMESPACES {
        let c = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(bit), bit).map_err(err)?;
        clone.push(SeccompRule::new(vec![c]).map_err(err)?);
    }
    rules.insert(libc::SYS_clone, clone);
    // Nothing may make itself dumpable again (QEMU does after `-runas`): a process of
    // the same uid could then trace it or read its memory through /proc.
    let dumpable = [
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::PR_SET_DUMPABLE as u64)
            .map_err(err)?,
        SeccompCondition::new(1, SeccompCmpArgLen::Qword, SeccompCmpOp::Ne, 0).map_err(err)?,
    ];
    rules.insert(libc::SYS_prctl, vec![SeccompRule::new(dumpable.to_vec()).map_err(err)?]);
    // clone3 passes its flags in memory a filter cannot read: a second filter answers
    // it ENOSYS, which makes libc fall back to clone, whose flags the first one sees.
    let clone3 = std::collections::BTreeMap::from([(libc::SYS_clone3, vec![])]);
    Ok([denying(rules, libc::EPERM)?, denying(clone3, libc::ENOSYS)?])
}

/// A filter that allows everything but what `rules` match, which fails with `errno`
/// (virtiofsd's set-id filter is one too).
pub fn denying(
    rules: std::collections::BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
) -> Result<seccompiler::BpfProgram, HelperFilterError> {
    compile(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32))
}

/// `rules` compiled for x86_64: a call that matches gets `on_match`, any other
/// `mismatch` (a deny-list allows on mismatch, an allow-list the other way round).
pub fn compile(
    rules: std::collections::BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    on_match: SeccompAction,
) -> Result<seccompiler::BpfProgram, HelperFilterError> {
    let f = SeccompFilter::new(rules, mismatch, on_match, seccompiler::TargetArch::x86_64).map_err(err)?;
    f.try_into().map_err(|e: seccompiler::BackendError| err(e))
}

/// Installs the filter for `who` just before `cmd` execs (register it after the hooks
/// that need what it refuses: the drop to the sandbox's uid).
pub fn install_before_exec(cmd: &mut Command, who: For) -> Result<(), HelperFilterError> {
    let progs = program(who)?;
    // SAFETY: the hook only makes the prctl and seccomp calls of apply_filter on
    // programs built before the fork: no allocation, no lock, async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            for prog in &progs {
                seccompiler::apply_filter(prog).map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            Ok(())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell under the helper filter, as root: it still runs programs and forks, but
    /// cannot trace, unshare, mount, change ids or make a namespace by clone.
    #[test]
    fn a_helper_keeps_forking_and_exec_but_not_what_reaches_further() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (does not skip)");
        let run = |script: &str| {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", script]);
            install_before_exec(&mut c, For::Helper).expect("filter");
            let out = c.output().expect("sh");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
            )
        };
        let (code, out) = run("echo hi | cat; grep Seccomp: /proc/self/status");
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("hi") && out.contains("Seccomp:\t2"), "{out}");
        for (what, script) in [
            ("unshare", "unshare -n true"),
            ("mount", "mount -t tmpfs none /mnt"),
            ("setuid", "setpriv --reuid=1000 true"),
            ("chroot", "chroot / true"),
        ] {
            let (code, out) = run(script);
            assert_ne!(code, Some(0), "{what} went through: {out}");
        }
        // The same calls without the filter do work here (so the test can fail).
        let ok = Command::new("/bin/sh").args(["-c", "unshare -n true && chroot / true"]).status().expect("sh");
        assert!(ok.success());
    }

    #[test]
    fn qemu_keeps_chroot_and_its_id_drop() {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "chroot / setpriv --reuid=65534 --regid=65534 --clear-groups true && ! unshare -n true"]);
        install_before_exec(&mut c, For::Qemu).expect("filter");
        let st = c.status().expect("sh");
        assert!(st.success(), "{st}");
    }
}
