//! podman runs isola containers with `--runtime isola-runtime` (through conmon).

use std::time::Duration;

use isola_e2e::docker::{with_terminal, IMAGE};
use isola_e2e::podman::Podman;

#[test]
fn podman_run_rm_prints_from_a_microvm_and_keeps_the_exit_code() {
    let p = Podman::start();
    let out = p.podman(&["run", "--rm", IMAGE, "echo", "hi"]);
    assert_eq!((out.stdout.as_str(), out.code), ("hi\n", 0), "{}", out.stderr);
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let out = p.podman(&["run", "--rm", IMAGE, "uname", "-r"]);
    assert_ne!(out.stdout.trim(), host.trim(), "the guest's kernel answers");
    let out = p.podman(&["run", "--rm", "--network", "none", IMAGE, "sh", "-c", "exit 3"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(p.ids().is_empty(), "--rm removed them: {:?}", p.ids());
}

#[test]
fn podman_detached_exec_ps_stop_and_rm() {
    let p = Podman::start();
    let out = p.podman(&["run", "-d", "--network", "none", IMAGE, "sleep", "300"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.stdout.trim().to_string();
    let status =
        |p: &Podman| p.podman(&["ps", "-a", "--filter", &format!("id={id}"), "--format", "{{.Status}}"]).stdout;
    assert!(status(&p).starts_with("Up"), "{}", status(&p));
    let out = p.podman(&["exec", &id, "sh", "-c", "echo exec-out; exit 6"]);
    assert_eq!((out.stdout.as_str(), out.code), ("exec-out\n", 6), "{}", out.stderr);
    let cmd = format!("{} exec -it {id} sh", p.command_line());
    let tty = with_terminal(&cmd, "tty; echo exec-tty-$((2+3))\nexit\n", Duration::from_secs(3));
    assert!(tty.contains("/dev/pts/") && tty.contains("exec-tty-5"), "{tty:?}");
    assert_eq!(p.podman(&["stop", "-t", "1", &id]).code, 0);
    assert!(status(&p).starts_with("Exited (137)"), "{}", status(&p));
    assert_eq!(p.podman(&["rm", &id]).code, 0);
    p.assert_nothing_left(&id);
}

#[test]
fn podman_run_it_gets_a_terminal() {
    let p = Podman::start();
    let cmd = format!("stty rows 31 cols 99; {} run -it --rm --network none {IMAGE} sh", p.command_line());
    let out = with_terminal(&cmd, "stty size; tty; echo typed-$((6*7))\nexit 4\n", Duration::from_secs(8));
    assert!(out.contains("31 99"), "{out:?}");
    assert!(out.contains("/dev/pts/") && out.contains("typed-42"), "{out:?}");
    assert!(p.ids().is_empty(), "{:?}", p.ids());
}

/// As under runc, the container writes into its own layer: `podman diff` and
/// `podman mount` see the write, and `podman start` runs on it again.
#[test]
fn podman_sees_a_containers_writes_in_diff_mount_and_the_next_start() {
    let p = Podman::start();
    let script = "cat /f 2>/dev/null || echo first-run; echo persisted > /f";
    let out = p.podman(&["run", "--network", "none", "--name", "pw1", IMAGE, "sh", "-c", script]);
    assert_eq!((out.stdout.as_str(), out.code), ("first-run\n", 0), "{}", out.stderr);
    let diff = p.podman(&["diff", "pw1"]);
    assert!(diff.stdout.lines().any(|l| l == "A /f"), "podman diff: {:?} {}", diff.stdout, diff.stderr);
    let mount = p.podman(&["mount", "pw1"]);
    assert_eq!(mount.code, 0, "{}", mount.stderr);
    let at = std::path::Path::new(mount.stdout.trim()).join("f");
    assert_eq!(std::fs::read_to_string(&at).ok().as_deref(), Some("persisted\n"), "{}", at.display());
    assert_eq!(p.podman(&["umount", "pw1"]).code, 0);
    let start = p.podman(&["start", "-a", "pw1"]);
    assert_eq!((start.stdout.as_str(), start.code), ("persisted\n", 0), "{}", start.stderr);
    let id = p.podman(&["inspect", "--format", "{{.Id}}", "pw1"]).stdout.trim().to_string();
    assert_eq!(p.podman(&["rm", "pw1"]).code, 0);
    p.assert_nothing_left(&id);
}
