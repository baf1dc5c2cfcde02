//! A hostile container against its sandbox: it cannot reach the agent over vsock (no
//! loopback in the guest kernel, the agent takes only the host's CID, the default
//! seccomp profile refuses vsock sockets), and a connection flood from the host side
//! does not take the sandbox down.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use isola_e2e::{busybox_rootfs, isola};
use isola_sandbox::state;

/// The probe, built static so it runs in the busybox rootfs.
fn probe_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("probe dir");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("probes/vsock_probe.c");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.path().join("vsock_probe"))
        .arg(&src)
        .output()
        .expect("gcc (build-essential)");
    assert!(out.status.success(), "building the probe: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn run_probe(name: &str, extra: &[&str]) -> String {
    let probes = probe_dir();
    let vol = format!("{}:/probe:ro", probes.path().display());
    let cid = isola_sandbox::names::guest_cid(name).to_string();
    let r = busybox_rootfs().display().to_string();
    let mut args = vec!["run", "--name", name, "--network", "none", "-v", &vol, "--rootfs", &r];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/probe/vsock_probe", &cid]);
    let (out, err, code) = isola(&args, None);
    assert_eq!(code, 0, "probe run: {out}\n{err}");
    out
}

#[test]
fn a_container_cannot_reach_the_agent_over_vsock() {
    // Without seccomp: the kernel and the agent must refuse on their own.
    let out = run_probe("e2e-vsock-raw", &["--security-opt", "seccomp=unconfined"]);
    for who in ["loopback", "own", "host"] {
        let line = out.lines().find(|l| l.starts_with(who)).unwrap_or_else(|| panic!("no {who} line: {out}"));
        assert!(!line.contains("REPLY"), "the agent answered a container ({line}): {out}");
        assert!(!line.contains("socket-refused"), "unconfined means the socket itself is allowed: {out}");
    }
    // With the default profile the socket is refused before anything else.
    let out = run_probe("e2e-vsock-seccomp", &[]);
    for who in ["loopback", "own", "host"] {
        let line = out.lines().find(|l| l.starts_with(who)).unwrap_or_else(|| panic!("no {who} line: {out}"));
        assert!(line.contains("socket-refused Operation not permitted"), "{line}: {out}");
    }
}

/// Removes the sandbox however the test ends.
struct Removed(&'static str);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = isola(&["rm", "-f", self.0], None);
    }
}

#[test]
fn a_connection_flood_does_not_power_the_sandbox_off() {
    let _cleanup = Removed("e2e-flood");
    let r = busybox_rootfs().display().to_string();
    let (out, err, code) = isola(&["run", "-d", "--name", "e2e-flood", "--rootfs", &r, "--", "sleep", "1000"], None);
    assert_eq!(code, 0, "{out}{err}");
    let st = state::list(&state::default_root())
        .into_iter()
        .find(|(_, s)| s.id == "e2e-flood")
        .map(|(_, s)| s)
        .expect("sandbox on record");
    // More connections than the agent serves at once, all held open. Each waits for
    // its handshake answer before it is closed: vhost-device-vsock 0.3 (the QEMU
    // backend's daemon) panics writing `OK` to a client that already left.
    let mut held = Vec::new();
    for _ in 0..isola_guest_limit() + 44 {
        let Ok(mut s) = UnixStream::connect(&st.vsock_uds) else { break };
        let _ = s.write_all(b"CONNECT 1024\n");
        held.push(s);
    }
    assert!(held.len() > isola_guest_limit(), "opened {} connections", held.len());
    for s in &mut held {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut byte = [0u8; 1];
        while matches!(std::io::Read::read(s, &mut byte), Ok(1)) && byte[0] != b'\n' {}
    }
    // QEMU runs under its own seccomp filter (`-sandbox on,…`), which sets no_new_privs.
    if st.hypervisor == isola_sandbox::HypervisorKind::Qemu {
        let status = std::fs::read_to_string(format!("/proc/{}/status", st.vmm_pid)).expect("QEMU's status");
        let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(str::trim).unwrap_or("").to_string();
        assert_eq!((field("Seccomp:"), field("NoNewPrivs:")), ("2".to_string(), "1".to_string()), "{status}");
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    let agent = st.agent(Duration::from_secs(5));
    let mut answered = false;
    for _ in 0..10 {
        if agent.ping().is_ok() {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answered, "the agent answers after the flood");
    let (_, err, code) = isola(&["exec", "e2e-flood", "--", "true"], None);
    assert_eq!(code, 0, "exec after the flood: {err}");
    let (_, err, code) = isola(&["rm", "-f", "e2e-flood"], None);
    assert_eq!(code, 0, "{err}");
}

/// The agent's connection bound (guest-agent's `server::MAX_CONNECTIONS`).
fn isola_guest_limit() -> usize {
    256
}
