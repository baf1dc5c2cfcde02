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
    // Not dumpable: its /proc files belong to root, not to the uid it runs as.
    let owner =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(format!("/proc/{}/mem", child.id())).expect("proc"));
    let status = format!("{status}ProcOwner:\t{owner}\n");
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
    assert_eq!(field(&s, "ProcOwner:"), "0", "not dumpable: another process of uid 65534 cannot trace it");
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

fn ns(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).map(|p| p.display().to_string()).unwrap_or_default()
}

/// With --jail: the pid the caller holds is a supervisor as confined as the VMM; the
/// VMM under it is PID 1 of its own PID namespace, with its own mount and IPC
/// namespaces and a root that holds nothing of the host's but the vsock directory;
/// killing the supervisor takes the VMM with it.
#[test]
fn a_jailed_vmm_lives_in_its_own_namespaces_and_dies_with_its_supervisor() {
    assert!(Path::new("/dev/kvm").exists(), "/dev/kvm is missing: these tests need KVM; they do not skip");
    let dir = tempfile::tempdir().expect("tmp");
    let vsock = dir.path().join("vsock");
    std::fs::create_dir(&vsock).expect("vsock dir");
    let mut sup = Command::new(env!("CARGO_BIN_EXE_isola-vmm"))
        .arg("--kernel")
        .arg(guest("idle"))
        .args(["--timeout-ms", "20000", "--jail", "--uid", "65534", "--gid", "65534", "--vsock-uds"])
        .arg(vsock.join("v.sock"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("isola-vmm");
    let out = sup.stdout.take().expect("stdout");
    let idle = BufReader::new(out).lines().map_while(Result::ok).any(|l| l.contains("isola-guest: idle"));
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", sup.id())).unwrap_or_default();
    let vmm = children.split_whitespace().next().unwrap_or("").to_string();
    let read = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let (sup_status, vmm_status) = (read(&sup.id().to_string()), read(&vmm));
    let root: Vec<String> = std::fs::read_dir(format!("/proc/{vmm}/root"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let jailed_vsock = Path::new(&format!("/proc/{vmm}/root")).join(vsock.strip_prefix("/").expect("absolute"));
    let sees_socket = jailed_vsock.join("v.sock").exists();
    let spaces: Vec<(String, String)> = ["mnt", "pid", "ipc"].iter().map(|k| (ns("self", k), ns(&vmm, k))).collect();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup.id() as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("kill the supervisor");
    let _ = sup.wait();
    let vmm_gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        !Path::new(&format!("/proc/{vmm}")).exists()
    });
    assert!(idle, "the idle guest came up in the jail");
    assert!(!vmm.is_empty(), "the supervisor has the VMM as its child");
    for s in [&sup_status, &vmm_status] {
        assert_eq!(field(s, "Seccomp:"), "2", "{s}");
        assert_eq!(field(s, "NoNewPrivs:"), "1", "{s}");
        assert_eq!(field(s, "CapEff:"), "0000000000000000", "{s}");
        assert_eq!(field(s, "Uid:").split_whitespace().collect::<Vec<_>>(), ["65534"; 4], "{s}");
    }
    assert_eq!(field(&vmm_status, "NSpid:").split_whitespace().last(), Some("1"), "PID 1 of its own namespace");
    for (host, jailed) in &spaces {
        assert!(!jailed.is_empty() && host != jailed, "{host} vs {jailed}");
    }
    assert_eq!(
        root,
        vec![vsock.components().nth(1).expect("top dir").as_os_str().to_string_lossy().into_owned()],
        "the jail's root holds only the way to the vsock directory"
    );
    assert!(sees_socket, "the vsock socket is reachable in the jail");
    assert!(vmm_gone, "the VMM outlived its supervisor");
}

/// The supervisor ends as the VMM does: a clean guest exit is 0, a VMM killed by its
/// filter is a supervisor killed by the same signal.
#[test]
fn a_jailed_vmm_ends_the_way_its_vmm_ends() {
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_isola-vmm"))
            .arg("--kernel")
            .arg(guest("boot_check_pvh"))
            .args(["--timeout-ms", "10000", "--jail"])
            .args(extra)
            .output()
            .expect("isola-vmm")
    };
    let ok = run(&[]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let killed = run(&["--confine-selftest"]);
    assert_eq!(killed.status.signal(), Some(libc::SIGSYS), "{killed:?}");
}

/// A warning logged once the VMM is confined, with stderr on a terminal that shows
/// colour (isola-vmm run from a console, as in the nested report), once killed the VMM:
/// env_logger asked the terminal (ioctl TCGETS) at every line, which no filter allows.
/// The console is /dev/full, so each serial write fails and is warned about.
#[test]
fn a_warning_on_a_colour_terminal_does_not_kill_the_vmm() {
    use std::io::Read;
    assert!(Path::new("/dev/kvm").exists(), "/dev/kvm is missing: these tests need KVM; they do not skip");
    let pty = nix::pty::openpty(None, None).expect("pty");
    let mut child = Command::new(env!("CARGO_BIN_EXE_isola-vmm"))
        .arg("--kernel")
        .arg(guest("boot_check_pvh"))
        .args(["--timeout-ms", "10000", "--console", "/dev/full"])
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(pty.slave))
        .spawn()
        .expect("isola-vmm");
    // What it writes to the terminal, read while it runs (a full terminal would block
    // it); the read ends with EIO once it exits and the slave is closed.
    let mut master = std::fs::File::from(pty.master);
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = master.read(&mut buf) {
        said.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().expect("wait");
    let said = String::from_utf8_lossy(&said);
    assert_ne!(status.signal(), Some(libc::SIGSYS), "killed by its own filter for a log line: {said}");
    assert!(said.contains("serial write failed"), "the guest's output made no warning: {said}");
    assert!(status.success(), "{status:?}: {said}");
}
