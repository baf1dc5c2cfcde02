//! isola-vmm confines itself before the guest runs: no capabilities, no_new_privs,
//! a seccomp filter on every thread that kills the process on anything else.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn guest(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guests");
    isola_testguests::build(name, &dir).unwrap_or_else(|e| panic!("building test guest {name}: {e}"))
}

/// `/proc/<vmm>/status` once the idle guest runs (it halts for ever), then the VMM killed.
fn status_while_running(extra: &[&str]) -> (String, String) {
    assert!(Path::new("/dev/kvm").exists(), "/dev/kvm is missing: these tests need KVM; they do not skip");
    let mut child = Command::new(env!("CARGO_BIN_EXE_isola-vmm"))
        .arg("--kernel")
        .arg(guest("idle"))
        .args(["--timeout-ms", "20000"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("isola-vmm");
    let out = child.stdout.take().expect("stdout");
    let idle = BufReader::new(out).lines().map_while(Result::ok).any(|l| l.contains("isola-guest: idle"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(idle, "the idle guest came up");
    (status, limits)
}

fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or_else(|| panic!("no {key} in {status}"))
}

#[test]
fn a_running_vmm_holds_no_capability_and_runs_under_seccomp() {
    let (s, limits) = status_while_running(&[]);
    assert_eq!(field(&s, "Seccomp:"), "2", "filter mode: {s}");
    assert_eq!(field(&s, "NoNewPrivs:"), "1", "{s}");
    for caps in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(&s, caps), "0000000000000000", "{caps} {s}");
    }
    let limit = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(limit("Max file size").contains(&"67108864"), "console and logs capped at 64 MiB: {limits}");
    assert!(limit("Max core file size").contains(&"0"), "{limits}");
}

#[test]
fn the_guest_runs_as_the_unprivileged_user_it_is_given() {
    let (s, _) = status_while_running(&["--uid", "65534", "--gid", "65534"]);
    assert_eq!(field(&s, "Uid:").split_whitespace().collect::<Vec<_>>(), ["65534"; 4], "{s}");
    assert_eq!(field(&s, "Gid:").split_whitespace().collect::<Vec<_>>(), ["65534"; 4], "{s}");
    assert_eq!(field(&s, "Groups:"), "", "no supplementary groups: {s}");
    assert_eq!(field(&s, "CapEff:"), "0000000000000000", "{s}");
}

#[test]
fn the_opt_out_is_really_off() {
    let (s, _) = status_while_running(&["--no-confine"]);
    assert_eq!(field(&s, "Seccomp:"), "0", "{s}");
    assert_ne!(field(&s, "CapEff:"), "0000000000000000", "{s}");
}

#[test]
fn a_forbidden_syscall_kills_the_vmm() {
    let out = Command::new(env!("CARGO_BIN_EXE_isola-vmm"))
        .arg("--kernel")
        .arg(guest("boot_check_pvh"))
        .args(["--timeout-ms", "10000", "--confine-selftest"])
        .output()
        .expect("isola-vmm");
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "killed by the filter: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("self-test: threads started"), "threads must still start once confined: {err}");
}
