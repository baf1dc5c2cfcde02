//! Snapshot and restore on this host's KVM with the `counter` test guest: snapshotted
//! mid-count through the control API, then restored twice at once. Each clone must
//! print exactly the rest of the sequence (from the count where the snapshot was, on
//! its own copy of memory), and the snapshot's files must not change.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isola_testguests as testguest;

mod common;

fn guest(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guests");
    testguest::build(name, &dir).unwrap_or_else(|e| panic!("building test guest {name}: {e}"))
}

fn vmm(args: &[&str]) -> Child {
    assert!(Path::new("/dev/kvm").exists(), "/dev/kvm is missing: snapshot tests need KVM; they do not skip");
    Command::new(env!("CARGO_BIN_EXE_isola-vmm"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run isola-vmm")
}

/// What a whole run of `counter` prints.
fn full_sequence() -> String {
    let mut s: String = (0..100).map(|n| format!("count {n}\n")).collect();
    s.push_str("isola-guest: done\n");
    s
}

fn wait_for(path: &Path, text: &str, secs: u64) -> String {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if s.contains(text) {
            return s;
        }
        assert!(Instant::now() < until, "no {text:?} within {secs} s; console: {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn command(sock: &Path, cmd: &str) -> String {
    let mut s = UnixStream::connect(sock).expect("connect to the control socket");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    writeln!(s, "{cmd}").expect("send");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("answer");
    line.trim().to_string()
}

fn finish(child: Child, what: &str) -> String {
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed: {stderr}");
    stderr
}

fn sha(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).expect("read")).to_vec()
}

/// A template's isola-vmm arguments: `kernel` with the control API, its console at
/// `dir/console`, its snapshot to `dir/snap`, and these devices.
fn template_args(kernel: &Path, dir: &Path, devices: &[&str]) -> Vec<String> {
    let p = |name: &str| dir.join(name).to_str().expect("utf-8").to_string();
    let mut args: Vec<String> = vec!["--kernel".into(), kernel.to_str().expect("utf-8").into()];
    for (flag, name) in [("--console", "console"), ("--api-sock", "api.sock"), ("--snapshot-to", "snap")] {
        args.extend([flag.to_string(), p(name)]);
    }
    args.extend(["--timeout-ms".into(), "60000".into()]);
    args.extend(devices.iter().map(|d| d.to_string()));
    args
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Asks the VM behind `api` for its snapshot, which must succeed.
fn take_snapshot(api: &Path) {
    let answer = command(api, "snapshot");
    assert!(answer.starts_with("ok memory_bytes="), "snapshot: {answer}");
}

/// A snapshot, then the template stopped and its exit checked.
fn snapshot_and_stop(api: &Path, template: Child) {
    take_snapshot(api);
    assert_eq!(command(api, "stop"), "ok");
    finish(template, "the snapshotted VM");
}

/// Boots `counter` with the control API, snapshots it once it printed `at`, stops
/// it; returns what it printed before the snapshot.
fn snapshot_counter(dir: &Path, at: &str) -> String {
    let (console, api) = (dir.join("console"), dir.join("api.sock"));
    let child = vmm(&strs(&template_args(&guest("counter"), dir, &[])));
    wait_for(&console, at, 30);
    take_snapshot(&api);
    // Paused: nothing more is printed, so this is all of it.
    let before = std::fs::read_to_string(&console).expect("console");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(std::fs::read_to_string(&console).expect("console"), before, "the guest ran on after the snapshot");
    assert_eq!(
        command(&api, "snapshot"),
        "error: snapshot of a second snapshot into the same directory is not supported yet"
    );
    assert_eq!(
        command(&api, "bogus"),
        "error: unknown command \"bogus\" (pause, resume, snapshot, stop, balloon [MIB])"
    );
    assert_eq!(command(&api, "balloon 8"), "error: this VM has no balloon (start isola-vmm with --balloon)");
    assert_eq!(command(&api, "stop"), "ok");
    finish(child, "the snapshotted VM");
    before
}

/// The balloon's target is the control API's to set (a guest without a driver holds
/// nothing in it), a bad one is refused by name, and a VM with a balloon snapshots.
#[test]
fn the_balloons_target_is_set_on_the_control_api() {
    let d = tempfile::tempdir().expect("tmp");
    let (console, api) = (d.path().join("console"), d.path().join("api.sock"));
    let child = vmm(&strs(&template_args(&guest("counter"), d.path(), &["--balloon"])));
    wait_for(&console, "count 3\n", 30);
    let answer = command(&api, "balloon 16");
    assert!(answer.starts_with("ok target_mib=16 actual_mib=0 reported_mib=0"), "{answer}");
    assert!(command(&api, "balloon").starts_with("ok target_mib=16 "), "the target stays");
    assert_eq!(command(&api, "balloon lots"), "error: balloon target \"lots\" is not a size in MiB");
    take_snapshot(&api);
    assert_eq!(command(&api, "stop"), "ok");
    finish(child, "the VM with a balloon");
}

#[test]
fn two_clones_of_a_counting_guest_go_on_from_the_same_count_on_their_own_memory() {
    let d = tempfile::tempdir().expect("tmp");
    let before = snapshot_counter(d.path(), "count 10\n");
    let snap = d.path().join("snap");
    let (mem_sha, state_sha) = (sha(&snap.join("memory")), sha(&snap.join("vm.snap")));
    let consoles: Vec<PathBuf> = (0..2).map(|i| d.path().join(format!("clone{i}"))).collect();
    // The second clone's memory is a shared copy (as virtio-fs needs), not a mapping.
    let clones: Vec<Child> = consoles
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut args = vec!["--restore", snap.to_str().expect("utf-8"), "--console", c.to_str().expect("utf-8")];
            args.extend(["--timeout-ms", "60000"]);
            if i == 1 {
                args.push("--shared-memory");
            }
            vmm(&args)
        })
        .collect();
    for (i, c) in clones.into_iter().enumerate() {
        let stderr = finish(c, &format!("clone {i}"));
        assert!(stderr.contains("event=vmm_ready"), "{stderr}");
        let after = std::fs::read_to_string(&consoles[i]).expect("clone console");
        assert!(!after.starts_with("count 0\n"), "clone {i} booted afresh: {after}");
        // Shared memory would show as counts skipped by one clone, taken by the other.
        assert_eq!(format!("{before}{after}"), full_sequence(), "clone {i} did not go on where the snapshot was");
    }
    assert_eq!(sha(&snap.join("memory")), mem_sha, "a clone wrote into the snapshot's memory file");
    assert_eq!(sha(&snap.join("vm.snap")), state_sha);
}

#[test]
fn a_snapshot_with_a_wrong_header_is_refused_and_nothing_runs() {
    let d = tempfile::tempdir().expect("tmp");
    snapshot_counter(d.path(), "count 3\n");
    let snap = d.path().join("snap");
    let state = snap.join("vm.snap");
    let good = std::fs::read(&state).expect("read");
    let refused = |what: &str| {
        let console = d.path().join("refused");
        let c = vmm(&["--restore", snap.to_str().expect("utf-8"), "--console", console.to_str().expect("utf-8")]);
        let out = c.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(what), "want {what:?}: {stderr}");
        assert_eq!(std::fs::read_to_string(&console).unwrap_or_default(), "", "{what}: the guest ran");
    };
    // The magic (right after the 4-byte header length).
    let mut bad = good.clone();
    bad[4] ^= 0xff;
    std::fs::write(&state, &bad).expect("write");
    refused("is not an isola-vmm snapshot");
    // The format version (the byte after the magic, in bincode's varint encoding).
    let mut bad = good.clone();
    bad[12] = 7;
    std::fs::write(&state, &bad).expect("write");
    refused(&format!("the format version is 7, this isola-vmm needs {}", isola_vmm::snapshot::FORMAT_VERSION));
    // The state's last byte.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&state, &bad).expect("write");
    refused("state does not match its checksum");
    std::fs::write(&state, &good).expect("write");
    std::fs::remove_file(snap.join("memory")).expect("rm");
    refused("opening");
}

/// Connects to a VM's hybrid-vsock socket, port 1024 (vsock_echo's listener), and
/// returns what it echoes of `msg`.
fn echo(uds: &Path, msg: &[u8]) -> String {
    use std::io::Read;
    let mut s = UnixStream::connect(uds).expect("connect to the vsock socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    s.write_all(b"CONNECT 1024\n").expect("connect line");
    let mut ok = [0u8; 14];
    s.read_exact(&mut ok).expect("OK line");
    assert!(ok.starts_with(b"OK "), "{:?}", String::from_utf8_lossy(&ok));
    s.write_all(msg).expect("send");
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).expect("echo");
    String::from_utf8_lossy(&back).into_owned()
}

#[test]
fn a_guest_with_a_vsock_device_is_restored_twice_and_each_clone_answers_on_its_own_socket() {
    let d = tempfile::tempdir().expect("tmp");
    let kernel = guest("vsock_echo");
    let (console, api, snap, uds) =
        (d.path().join("console"), d.path().join("api.sock"), d.path().join("snap"), d.path().join("v.sock"));
    // The guest first talks to host port 5000, then listens on 1024.
    let host = common::host_port_5000(&uds);
    let s = |p: &PathBuf| p.to_str().expect("utf-8").to_string();
    let child = vmm(&strs(&template_args(&kernel, d.path(), &["--vsock-uds", &s(&uds), "--vsock-cid", "7"])));
    wait_for(&console, "vsock: listening\n", 30);
    snapshot_and_stop(&api, child);
    host.join().expect("host side of port 5000");
    // A restore must have the snapshot's devices.
    let bare = vmm(&["--restore", &s(&snap), "--console", "none"]).wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&bare.stderr);
    assert!(!bare.status.success() && err.contains("the snapshot has devices [vsock], this VM []"), "{err}");
    let clones: Vec<(Child, PathBuf, PathBuf)> = (0..2)
        .map(|i| {
            let (c, u) = (d.path().join(format!("clone{i}")), d.path().join(format!("clone{i}.sock")));
            // The test guest reads its CID once, at boot (Linux reads it again on the
            // TRANSPORT_RESET a restored device sends): clones keep the snapshot's.
            let cid = "7".to_string();
            let child = vmm(&[
                "--restore",
                &s(&snap),
                "--console",
                &s(&c),
                "--vsock-uds",
                &s(&u),
                "--vsock-cid",
                &cid,
                "--timeout-ms",
                "60000",
            ]);
            (child, c, u)
        })
        .collect();
    for (i, (_, _, u)) in clones.iter().enumerate() {
        let until = Instant::now() + Duration::from_secs(10);
        while !u.exists() {
            assert!(Instant::now() < until, "clone {i} made no vsock socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        let got = std::panic::catch_unwind(|| echo(u, b"hello vsock"));
        if !matches!(got.as_deref(), Ok("HELLO VSOCK")) {
            let mut all = String::new();
            for (j, (mut c, con, _)) in clones.into_iter().enumerate() {
                let _ = c.kill();
                let out = c.wait_with_output().expect("wait");
                let console = std::fs::read_to_string(&con).unwrap_or_default();
                all += &format!("clone {j}: {}\n{console}\n", String::from_utf8_lossy(&out.stderr));
            }
            panic!("clone {i} did not echo ({got:?}):\n{all}");
        }
    }
    for (i, (child, c, _)) in clones.into_iter().enumerate() {
        let stderr = finish(child, &format!("clone {i}"));
        let out = std::fs::read_to_string(&c).expect("clone console");
        assert!(out.contains("vsock: echo done"), "clone {i}: {out}\n{stderr}");
        assert!(!out.contains("FAIL"), "clone {i}: {out}\n{stderr}");
        assert!(!out.contains("vsock: cid"), "clone {i} booted afresh: {out}");
    }
}

/// A network namespace for one test, deleted however the test ends.
struct Netns(String);
impl Netns {
    fn new(name: String) -> Self {
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip (iproute2)").success();
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }
    fn ip(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip").arg("-n").arg(&self.0).args(args).output().expect("ip")
    }
    /// The MAC of `tap` once the VMM has made it.
    fn wait_tap(&self, tap: &str) -> String {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.ip(&["-o", "link", "show", tap]);
            if out.status.success() {
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                return text.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("mac").to_string();
            }
            assert!(Instant::now() < until, "{tap} did not appear in {}", self.0);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn vmm_in(ns: &Netns, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_isola-vmm")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("isola-vmm in a namespace")
}

#[test]
fn a_guest_with_a_net_device_is_restored_onto_a_new_tap_and_gets_its_answer_there() {
    assert!(nix::unistd::geteuid().is_root(), "needs root for network namespaces (does not skip)");
    let d = tempfile::tempdir().expect("tmp");
    let kernel = guest("net_arp");
    let s = |p: &PathBuf| p.to_str().expect("utf-8").to_string();
    let (console, api, snap) = (d.path().join("console"), d.path().join("api.sock"), d.path().join("snap"));
    // The template asks for 10.99.0.1 on a tap where nobody answers.
    let a = Netns::new(format!("isola-sn-{}-a", std::process::id()));
    let child = vmm_in(&a, &strs(&template_args(&kernel, d.path(), &["--tap", "tap0"])));
    a.wait_tap("tap0");
    std::thread::sleep(Duration::from_millis(500));
    snapshot_and_stop(&api, child);
    assert!(!std::fs::read_to_string(&console).unwrap_or_default().contains("is at"), "the template got an answer");
    // The clone, on its own tap where 10.99.0.1 lives, goes on asking and is answered.
    let b = Netns::new(format!("isola-sn-{}-b", std::process::id()));
    let clone_console = d.path().join("clone");
    let clone = vmm_in(
        &b,
        &["--restore", &s(&snap), "--tap", "tap0", "--console", &s(&clone_console), "--timeout-ms", "60000"],
    );
    let mac = b.wait_tap("tap0");
    assert!(b.ip(&["addr", "add", "10.99.0.1/24", "dev", "tap0"]).status.success());
    assert!(b.ip(&["link", "set", "tap0", "up"]).status.success());
    let stderr = finish(clone, "the clone");
    let out = std::fs::read_to_string(&clone_console).expect("clone console");
    assert!(out.contains(&format!("net: 10.99.0.1 is at {mac}")), "{out}\n{stderr}");
}
