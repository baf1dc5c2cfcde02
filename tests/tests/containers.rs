//! Containers in real microVMs on this host (the backend isola picks: QEMU with
//! vhost-user vsock here), driven through the `isola` CLI and the sandbox library.

use std::time::Duration;

use isola_e2e::{busybox_rootfs, isola, processes_mentioning};
use isola_sandbox::sandbox::Sandbox;
use isola_sandbox::spec::{self, ContainerOptions};
use isola_sandbox::state;
use isola_sandbox::{Rootfs, StdioStream};

fn rootfs() -> String {
    busybox_rootfs().display().to_string()
}

fn assert_gone(name: &str) {
    let dir = state::default_root().join(name);
    assert!(!dir.exists(), "{} left behind", dir.display());
    // Everything a sandbox starts names its directory on its command line.
    let leaked = processes_mentioning(&format!("/{name}/"));
    assert!(leaked.is_empty(), "processes of {name} left behind: {leaked:?}");
}

#[test]
fn run_prints_output_and_returns_exit_codes() {
    let r = rootfs();
    let (out, err, code) = isola(
        &["run", "--name", "e2e-hello", "--rootfs", &r, "--", "sh", "-c", "echo hello; echo to-stderr >&2; exit 3"],
        None,
    );
    assert_eq!((out.as_str(), code), ("hello\n", 3), "stderr: {err}");
    assert!(err.contains("to-stderr"), "{err}");
    assert_gone("e2e-hello");
    let (_, err, code) = isola(&["run", "--name", "e2e-42", "--rootfs", &r, "--", "sh", "-c", "exit 42"], None);
    assert_eq!(code, 42, "{err}");
    let (_, err, code) = isola(&["run", "--name", "e2e-true", "--rootfs", &r, "--", "true"], None);
    assert_eq!(code, 0, "{err}");
    assert_gone("e2e-42");
    assert_gone("e2e-true");
}

#[test]
fn stdin_is_piped_through_to_the_container() {
    let r = rootfs();
    let (out, err, code) = isola(
        &["run", "-i", "--name", "e2e-stdin", "--rootfs", &r, "--", "sh", "-c", "tr a-z A-Z"],
        Some("piped through\n"),
    );
    assert_eq!((out.as_str(), code), ("PIPED THROUGH\n", 0), "{err}");
    assert_gone("e2e-stdin");
}

/// `isola run -it` inside `script`, which gives it a terminal and types for us.
#[test]
fn terminal_session_is_interactive_and_returns_the_exit_code() {
    let isola_bin = isola_e2e::require_binary("isola", "cargo build");
    let cmd = format!("{} run -it --name e2e-tty --rootfs {} -- sh", isola_bin.display(), rootfs());
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    {
        use std::io::Write;
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(b"tty; stty size; echo typed-$((6*7)); exit 5\n").expect("type");
    }
    let out = child.wait_with_output().expect("script output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("typed-42\r\n"), "the shell ran what was typed, through a line discipline: {text:?}");
    assert!(text.contains("/dev/pts/0"), "the terminal is the container's own: {text:?}");
    assert_gone("e2e-tty");
}

/// The sandbox's entry in `isola ps [-a] --json`, if listed.
fn ps_entry(all: bool, name: &str) -> Option<serde_json::Value> {
    let args: &[&str] = if all { &["ps", "-a", "--json"] } else { &["ps", "--json"] };
    let (out, err, code) = isola(args, None);
    assert_eq!(code, 0, "{err}");
    let ps: serde_json::Value = serde_json::from_str(&out).expect("ps json");
    ps.as_array().expect("array").iter().find(|s| s["name"] == name).cloned()
}

/// `isola stop` (SIGTERM, then SIGKILL after -t), `isola wait` (the exit code),
/// `isola stats --no-stream`, and `ps` without and with `-a`, as with Docker.
#[test]
fn stop_wait_stats_and_ps_all_work_as_with_docker() {
    let r = rootfs();
    // One container ends on SIGTERM with its own code; the other ignores SIGTERM.
    let scripts = [
        ("e2e-stop-term", "trap 'exit 7' TERM; echo up; while true; do sleep 1; done"),
        ("e2e-stop-kill", "trap '' TERM; echo up; while true; do sleep 1; done"),
    ];
    for (name, script) in scripts {
        let _ = isola(&["rm", "-f", name], None);
        let (out, err, code) = isola(&["run", "-d", "--name", name, "--rootfs", &r, "--", "sh", "-c", script], None);
        assert_eq!((out.trim(), code), (name, 0), "{err}");
        let up = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            isola(&["logs", name], None).0.contains("up")
        });
        assert!(up, "{name} set its trap");
    }
    let (out, err, code) = isola(&["stats", "--no-stream", "--json", "e2e-stop-term", "e2e-stop-kill"], None);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(out.trim()).expect("stats json");
    let rows = rows.as_array().expect("one row per sandbox");
    assert_eq!(rows.len(), 2, "{out}");
    for row in rows {
        assert!(row["memory_bytes"].as_u64().is_some_and(|m| m > 0), "{row}");
        assert!(row["pids"].as_u64().is_some_and(|p| p >= 1), "{row}");
        assert!(row["cpu_percent"].as_f64().is_some_and(|c| (0.0..=1000.0).contains(&c)), "{row}");
    }
    let (out, err, code) = isola(&["stats", "--no-stream", "e2e-stop-term"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("NAME") && out.contains("e2e-stop-term") && out.contains("MiB /"), "{out}");
    assert!(ps_entry(false, "e2e-stop-term").is_some(), "a running sandbox is listed by plain ps");

    let (out, err, code) = isola(&["stop", "-t", "20", "e2e-stop-term"], None);
    assert_eq!((out.trim(), code), ("e2e-stop-term", 0), "{err}");
    let (out, err, code) = isola(&["wait", "e2e-stop-term"], None);
    assert_eq!((out.trim(), code), ("7", 0), "the code its TERM trap exits with: {err}");
    let started = std::time::Instant::now();
    let (out, err, code) = isola(&["stop", "-t", "1", "e2e-stop-kill"], None);
    assert_eq!((out.trim(), code), ("e2e-stop-kill", 0), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(1), "SIGKILL only after -t");
    let (out, err, code) = isola(&["wait", "e2e-stop-kill"], None);
    assert_eq!((out.trim(), code), ("137", 0), "killed by SIGKILL: {err}");
    let (out, err, code) = isola(&["stop", "e2e-stop-kill"], None);
    assert_eq!((out.trim(), code), ("e2e-stop-kill", 0), "stopping a stopped sandbox is fine: {err}");

    // Exited sandboxes leave plain ps, and stay in ps -a with their codes until rm.
    assert!(ps_entry(false, "e2e-stop-term").is_none());
    assert_eq!(ps_entry(true, "e2e-stop-term").expect("ps -a")["exit_code"], 7);
    assert_eq!(ps_entry(true, "e2e-stop-kill").expect("ps -a")["exit_code"], 137);
    let (_, err, code) = isola(&["rm", "e2e-stop-term", "e2e-stop-kill"], None);
    assert_eq!(code, 0, "exited sandboxes are removed without -f: {err}");
    assert_gone("e2e-stop-term");
    assert_gone("e2e-stop-kill");
    let (_, err, code) = isola(&["stop", "e2e-stop-term"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no running sandbox named e2e-stop-term"), "{err}");
}

/// The first line a server at `addr` sends, if it answers within a few seconds.
fn first_line(addr: &str) -> Option<String> {
    use std::io::BufRead;
    let addr: std::net::SocketAddr = addr.parse().expect("address");
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).ok()?;
    Some(line).filter(|l| !l.is_empty())
}

/// A host address other than loopback (the first `hostname -I` gives).
fn host_address() -> String {
    let out = std::process::Command::new("hostname").arg("-I").output().expect("hostname -I");
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    all.split_whitespace().find(|a| a.parse::<std::net::Ipv4Addr>().is_ok()).expect("a host IPv4 address").to_string()
}

/// `-p` publishes a container port on the host: reached on the host's own address and
/// on 127.0.0.1 (or on 127.0.0.1 only, when asked); a port in use is a clear error;
/// `ps` shows the ports; nothing is left after kill -9 of the VMM, nor after rm.
#[test]
fn published_ports_reach_the_container_and_go_with_the_sandbox() {
    let r = rootfs();
    let name = "e2e-ports";
    let _ = isola(&["rm", "-f", name], None);
    let _ = isola(&["rm", "-f", "e2e-ports2"], None);
    let server = "while true; do echo hello-$(hostname) | busybox nc -l -p 8080; done";
    let args = ["run", "-d", "--name", name, "-p", "18080:8080", "-p", "127.0.0.1:18081:8080/tcp", "--rootfs", &r];
    let (out, err, code) = isola(&[&args[..], &["--", "sh", "-c", server]].concat(), None);
    assert_eq!((out.trim(), code), (name, 0), "{err}");
    let want = format!("hello-{name}\n");
    let served = |addr: &str| {
        (0..60).any(|_| {
            let got = first_line(addr);
            got.as_deref() == Some(want.as_str()) || {
                std::thread::sleep(Duration::from_millis(500));
                false
            }
        })
    };
    let host = host_address();
    for addr in ["127.0.0.1:18080".to_string(), format!("{host}:18080"), "127.0.0.1:18081".to_string()] {
        assert!(served(&addr), "the container's server answers on {addr}");
    }
    assert_eq!(first_line(&format!("{host}:18081")), None, "18081 is published on 127.0.0.1 only");
    let (out, _, _) = isola(&["ps", "--json"], None);
    let ps: serde_json::Value = serde_json::from_str(&out).expect("ps json");
    let me = ps.as_array().expect("array").iter().find(|s| s["name"] == name).expect("listed").clone();
    assert_eq!(me["ports"], serde_json::json!(["0.0.0.0:18080->8080/tcp", "127.0.0.1:18081->8080/tcp"]), "{me}");

    // A port in use is refused by name, and that sandbox leaves nothing.
    let (_, err, code) =
        isola(&["run", "-d", "--name", "e2e-ports2", "-p", "18080:80", "--rootfs", &r, "--", "true"], None);
    assert_ne!(code, 0);
    assert!(err.contains("0.0.0.0:18080->80/tcp") && err.contains("already in use"), "{err}");
    assert_gone("e2e-ports2");
    let (_, err, code) = isola(&["run", "--name", "e2e-ports3", "-p", "8080", "--rootfs", &r, "--", "true"], None);
    assert_ne!(code, 0);
    assert!(err.contains("HOST_PORT:CONTAINER_PORT"), "{err}");

    // kill -9 of the VMM: the forwarder goes with it and the ports are free again.
    let vmm = me["vmm_pid"].as_i64().expect("vmm pid") as i32;
    isola_e2e::containerd::kill9(vmm);
    let freed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpListener::bind("0.0.0.0:18080").is_ok() && std::net::TcpListener::bind("127.0.0.1:18081").is_ok()
    });
    assert!(freed, "the host ports are released once the VMM is gone");
    let (_, err, code) = isola(&["rm", "-f", name], None);
    assert!(code == 0 || err.contains("no running sandbox"), "{err}");
    let _ = isola(&["ps", "-a"], None); // a listing cleans what a dead VMM left
    assert_gone(name);
}

/// `isola cp` both ways, files and directories, symlinks copied as links; a fifo out
/// of the container is refused by name and leaves nothing on the host.
#[test]
fn cp_copies_files_and_directories_both_ways() {
    let r = rootfs();
    let name = "e2e-cp";
    let _ = isola(&["rm", "-f", name], None);
    let (out, err, code) = isola(&["run", "-d", "--name", name, "--rootfs", &r, "--", "sleep", "1000"], None);
    assert_eq!((out.trim(), code), (name, 0), "{err}");
    let host = tempfile::tempdir().expect("host dir");
    let h = host.path();
    std::fs::write(h.join("a.txt"), "alpha").expect("a");
    std::fs::create_dir(h.join("d")).expect("d");
    std::fs::write(h.join("d/b.txt"), "beta").expect("b");
    std::os::unix::fs::symlink("/etc/passwd", h.join("d/l")).expect("link");
    let sh = |script: &str| {
        let (out, err, code) = isola(&["exec", name, "--", "sh", "-c", script], None);
        assert_eq!(code, 0, "{script}: {err}");
        out
    };
    let cp = |src: &str, dst: &str| isola(&["cp", src, dst], None);

    let (_, err, code) = cp(h.join("a.txt").to_str().expect("path"), &format!("{name}:/tmp/"));
    assert_eq!(code, 0, "{err}");
    let (_, err, code) = cp(h.join("d").to_str().expect("path"), &format!("{name}:/tmp/d2"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(sh("cat /tmp/a.txt; echo; cat /tmp/d2/b.txt; echo; readlink /tmp/d2/l"), "alpha\nbeta\n/etc/passwd\n");

    sh("mkdir -p /tmp/out && echo from-guest > /tmp/out/x.txt && ln -s /etc/shadow /tmp/out/link");
    let (_, err, code) = cp(&format!("{name}:/tmp/out"), h.join("outcopy").to_str().expect("path"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(h.join("outcopy/x.txt")).expect("x"), "from-guest\n");
    let link = std::fs::read_link(h.join("outcopy/link")).expect("a symlink, not followed");
    assert_eq!(link, std::path::Path::new("/etc/shadow"));
    let (_, err, code) = cp(&format!("{name}:/tmp/out/x.txt"), h.to_str().expect("path"));
    assert_eq!(code, 0, "into an existing directory: {err}");
    assert_eq!(std::fs::read_to_string(h.join("x.txt")).expect("x"), "from-guest\n");

    sh("mkdir -p /tmp/bad && mkfifo /tmp/bad/f");
    let (_, err, code) = cp(&format!("{name}:/tmp/bad"), h.join("bad").to_str().expect("path"));
    assert_ne!(code, 0);
    assert!(err.contains("fifo"), "{err}");
    let left: Vec<_> = std::fs::read_dir(h).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert!(!h.join("bad").exists() && left.iter().all(|n| !n.to_string_lossy().starts_with(".isola-cp")), "{left:?}");
    let (_, err, code) = cp(&format!("{name}:/nonexistent"), h.join("n").to_str().expect("path"));
    assert_ne!(code, 0);
    assert!(err.contains("tar exited"), "{err}");

    let (_, err, code) = isola(&["rm", "-f", name], None);
    assert_eq!(code, 0, "{err}");
    assert_gone(name);
}

#[test]
fn detached_sandbox_takes_exec_ps_kill_and_rm() {
    let r = rootfs();
    // A previous, interrupted run may have left it: start clean.
    let _ = isola(&["rm", "-f", "e2e-detached"], None);
    let (out, err, code) = isola(
        &[
            "run",
            "-d",
            "--name",
            "e2e-detached",
            "--rootfs",
            &r,
            "--",
            "sh",
            "-c",
            "echo started-detached; echo to-err >&2; exec sleep 1000",
        ],
        None,
    );
    assert_eq!((out.trim(), code), ("e2e-detached", 0), "{err}");
    let logged = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        isola(&["logs", "e2e-detached"], None).0.contains("to-err")
    });
    let (out, err, _) = isola(&["logs", "e2e-detached"], None);
    assert!(logged && out.contains("started-detached\n"), "logs of a detached run: {out:?} {err}");
    let (out, err, code) = isola(
        &["exec", "e2e-detached", "--", "sh", "-c", "echo in-$(hostname); ps -o comm | grep -c sleep; exit 5"],
        None,
    );
    assert_eq!(code, 5, "{err}");
    assert_eq!(out, "in-e2e-detached\n1\n");
    let (out, err, code) = isola(&["inspect", "e2e-detached"], None);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
    assert_eq!(v["state"]["id"], "e2e-detached");
    assert_eq!(v["containers"][0]["info"]["status"], "running", "{v}");
    assert!(v["containers"][0]["stats"]["pids_current"].as_u64().is_some_and(|p| p >= 1), "{v}");
    let (out, _, code) = isola(&["ps", "--json"], None);
    assert_eq!(code, 0);
    let ps: serde_json::Value = serde_json::from_str(&out).expect("ps json");
    let me = ps.as_array().expect("array").iter().find(|s| s["name"] == "e2e-detached").expect("listed").clone();
    assert_eq!(me["container"], "running");
    let (_, err, code) = isola(&["rm", "e2e-detached"], None);
    assert_eq!(code, 1, "running sandboxes need -f");
    assert!(err.contains("is running"), "{err}");
    let (_, err, code) = isola(&["kill", "-s", "KILL", "e2e-detached"], None);
    assert_eq!(code, 0, "{err}");
    let stopped = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        isola(&["ps", "-a", "--json"], None).0.contains("\"stopped\"")
    });
    assert!(stopped, "the killed container is reported stopped");
    let (out, err, code) = isola(&["rm", "e2e-detached"], None);
    assert_eq!((out.trim(), code), ("e2e-detached", 0), "{err}");
    assert_gone("e2e-detached");
    let (_, err, code) = isola(&["exec", "e2e-detached", "--", "true"], None);
    assert_ne!(code, 0);
    assert!(err.contains("no running sandbox named e2e-detached"), "{err}");
}

#[test]
fn memory_limit_is_enforced_and_reported_as_oom() {
    let r = rootfs();
    let (_, err, code) = isola(
        &[
            "run",
            "-m",
            "24",
            "--name",
            "e2e-oom",
            "--rootfs",
            &r,
            "--",
            "dd",
            "if=/dev/zero",
            "of=/tmp/fill",
            "bs=1M",
            "count=200",
        ],
        None,
    );
    assert_eq!(code, 137, "{err}");
    assert!(err.contains("out of memory"), "{err}");
    assert_gone("e2e-oom");
}

#[test]
fn two_containers_in_one_sandbox_share_the_network_not_pids() {
    let opts = isola_e2e::sandbox_options("e2e-pod");
    let sb = Sandbox::start(&opts).expect("sandbox");
    let show = "echo net=$(readlink /proc/self/ns/net) pid=$(readlink /proc/self/ns/pid) me=$$; sleep 1000";
    for id in ["app", "sidecar"] {
        let spec =
            spec::spec(&ContainerOptions { args: vec!["sh".into(), "-c".into(), show.into()], ..Default::default() })
                .expect("spec");
        sb.create_container(id, spec, Rootfs::Upload(&busybox_rootfs()), &[]).expect("create");
    }
    let mut lines = Vec::new();
    for id in ["app", "sidecar"] {
        let c = sb.container(id);
        let mut out = c.init().stream(StdioStream::Stdout).expect("stdout");
        c.start().expect("start");
        let mut line = String::new();
        let mut byte = [0u8; 1];
        while std::io::Read::read(&mut out, &mut byte).expect("read") == 1 && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        lines.push(line);
    }
    let field = |l: &str, k: &str| l.split(' ').find_map(|w| w.strip_prefix(k)).map(str::to_string).expect("field");
    assert_eq!(field(&lines[0], "net="), field(&lines[1], "net="), "{lines:?}");
    assert_ne!(field(&lines[0], "pid="), field(&lines[1], "pid="), "{lines:?}");
    assert_eq!((field(&lines[0], "me="), field(&lines[1], "me=")), ("1".into(), "1".into()));
    // A signal death is 128 + signal, with the signal reported.
    sb.container("app").signal(9, false).expect("kill");
    let status = sb.container("app").wait().expect("wait");
    assert_eq!((status.code, status.signal, status.oom_killed), (137, Some(9), false));
    let containers = sb.agent().list().expect("list");
    assert_eq!(containers.len(), 2);
    let stats = sb.container("sidecar").stats().expect("stats");
    assert!(stats.pids_current >= 1, "{stats:?}");
    drop(sb);
    assert_gone("e2e-pod");
}

/// The rootfs is shared read-only over virtio-fs (no copy) under a per-container
/// overlay, volumes are bound in both ways, and nothing stays mounted afterwards,
/// also when the VMM is killed with SIGKILL.
#[test]
fn rootfs_and_volumes_over_virtio_fs_leave_no_mounts_behind() {
    let r = rootfs();
    let vol = tempfile::tempdir().expect("volume dir");
    std::fs::write(vol.path().join("in"), "from-host\n").expect("write");
    let ro = tempfile::tempdir().expect("ro dir");
    let rw_arg = format!("{}:/data", vol.path().display());
    let ro_arg = format!("{}:/ro:ro", ro.path().display());
    let script = "cat /data/in; echo from-guest > /data/out; touch /ro/x 2>/dev/null || echo ro-refused; \
                  touch /bin/new && echo image-writable-in-overlay; mount | grep -c virtiofs";
    let (out, err, code) = isola(
        &["run", "--name", "e2e-vfs", "-v", &rw_arg, "-v", &ro_arg, "--rootfs", &r, "--", "sh", "-c", script],
        None,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    // Two virtiofs mounts: the volumes (the root is an overlay whose lower is on virtio-fs).
    assert_eq!(lines[..4], ["from-host", "ro-refused", "image-writable-in-overlay", "2"], "{out}");
    assert_eq!(std::fs::read_to_string(vol.path().join("out")).expect("guest wrote"), "from-guest\n");
    assert!(!busybox_rootfs().join("bin/new").exists(), "the image itself is untouched");
    assert_gone("e2e-vfs");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains("/e2e-vfs/"), "mounts left behind");

    // SIGKILL the VMM of a detached sandbox: the next listing cleans up, mounts included.
    let _ = isola(&["rm", "-f", "e2e-vfs-kill"], None);
    let (_, err, code) =
        isola(&["run", "-d", "--name", "e2e-vfs-kill", "-v", &rw_arg, "--rootfs", &r, "--", "sleep", "1000"], None);
    assert_eq!(code, 0, "{err}");
    let st = state::SandboxState::load(&state::default_root().join("e2e-vfs-kill")).expect("state");
    assert!(std::fs::read_to_string("/proc/self/mountinfo").expect("mi").contains("/e2e-vfs-kill/"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.vmm_pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
    std::thread::sleep(Duration::from_millis(300));
    let (out, _, code) = isola(&["ps"], None);
    assert_eq!(code, 0);
    assert!(!out.contains("e2e-vfs-kill"), "{out}");
    assert_gone("e2e-vfs-kill");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains("/e2e-vfs-kill/"), "mounts left behind after SIGKILL");
    assert!(vol.path().join("in").exists(), "the volume's source survives cleanup");
}

fn sandbox_taps() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("isola") && n != "isola0")
        .collect()
}

/// The default network: an address on isola0, a route out through the host (NAT),
/// DNS; `--network none` is loopback only; taps and their rules vanish with the VMM,
/// also after SIGKILL.
#[test]
fn containers_reach_the_outside_over_the_bridge_and_taps_do_not_leak() {
    let r = rootfs();
    let outside = isola_e2e::outside::Outside::new(1);
    let listener = outside.listen(outside.addr);
    let port = listener.local_addr().expect("addr").port();
    let accept = std::thread::spawn(move || {
        let (mut c, peer) = listener.accept().expect("the guest connects");
        let mut s = String::new();
        std::io::Read::read_to_string(&mut c, &mut s).expect("read");
        (s, peer.ip())
    });
    let script =
        format!("ip -4 addr show eth0 | grep -o 'inet [0-9./]*'; echo hello-host | nc {} {port}", outside.addr);
    let (out, err, code) = isola(&["run", "--name", "e2e-net", "--rootfs", &r, "--", "sh", "-c", &script], None);
    assert_eq!(code, 0, "{out}\n{err}");
    let (got, peer) = accept.join().expect("accept thread");
    assert_eq!(got, "hello-host\n");
    let addr = out.trim().strip_prefix("inet ").expect("an address").to_string();
    assert!(addr.starts_with("10.88.") && addr.ends_with("/16"), "{addr}");
    // Only this sandbox's tap counts (tests running beside this one make their own).
    let ip: std::net::Ipv4Addr = addr.trim_end_matches("/16").parse().expect("an IPv4 address");
    let own_tap = isola_sandbox::net::tap_for(ip);
    assert_eq!(peer, outside.host_addr, "the outside sees the host's address (NAT)");
    assert!(!sandbox_taps().contains(&own_tap), "tap {own_tap} left");
    assert!(!isola_sandbox::netfilter::port_chains().contains(&own_tap), "the rules of {own_tap} left");

    let (out, err, code) = isola(
        &["run", "--name", "e2e-nonet", "--network", "none", "--rootfs", &r, "--", "sh", "-c", "ls /sys/class/net"],
        None,
    );
    assert_eq!((out.as_str(), code), ("lo\n", 0), "{err}");

    let _ = isola(&["rm", "-f", "e2e-net-kill"], None);
    let (_, err, code) = isola(&["run", "-d", "--name", "e2e-net-kill", "--rootfs", &r, "--", "sleep", "1000"], None);
    assert_eq!(code, 0, "{err}");
    let st = state::SandboxState::load(&state::default_root().join("e2e-net-kill")).expect("state");
    let tap = st.net.as_ref().expect("networked").tap.clone();
    assert!(sandbox_taps().contains(&tap));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.vmm_pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        !sandbox_taps().contains(&tap)
    });
    assert!(gone, "tap {tap} outlived its VMM");
    let _ = isola(&["ps"], None);
    assert_gone("e2e-net-kill");
    assert!(!isola_sandbox::netfilter::port_chains().contains(&tap), "the rules of {tap} outlived the cleanup");
}

/// A foreground run whose virtiofsd dies stops with an error naming it, instead of
/// hanging on a filesystem that will never answer, and leaves nothing behind; also
/// while another VM boots beside it (load).
#[test]
fn a_dead_helper_ends_the_run_with_a_clear_error() {
    let isola_bin = isola_e2e::require_binary("isola", "cargo build");
    let _ = isola(&["rm", "-f", "e2e-helper-dies"], None);
    let r = rootfs();
    let load =
        std::thread::spawn(move || isola(&["run", "--name", "e2e-load", "--rootfs", &r, "--", "sleep", "3"], None));
    let child = std::process::Command::new(isola_bin)
        .args(["run", "--name", "e2e-helper-dies", "--rootfs", &rootfs(), "--", "sleep", "600"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("isola run");
    let dir = state::default_root().join("e2e-helper-dies");
    let st = (0..400)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            state::SandboxState::load(&dir).ok().filter(|s| s.vmm_pid > 0)
        })
        .expect("the sandbox starts");
    let fsd = *st.helper_pids.iter().find(|p| state::process_matches(**p, "virtiofsd")).expect("a virtiofsd");
    std::thread::sleep(Duration::from_millis(1500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(fsd), nix::sys::signal::Signal::SIGKILL).expect("kill virtiofsd");
    let started = std::time::Instant::now();
    let out = child.wait_with_output().expect("isola exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("virtiofsd exited"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "it ended because of the helper, not the sleep");
    assert_gone("e2e-helper-dies");
    let (_, err, code) = load.join().expect("the other run");
    assert_eq!(code, 0, "the VM beside it is unaffected: {err}");
}

/// Two `isola run --name X` at once: exactly one gets the name, the other is told it
/// exists and touches nothing of the winner's; removing the winner leaves nothing.
#[test]
fn two_runs_racing_for_one_name_leave_one_winner() {
    let _ = isola(&["rm", "-f", "e2e-race"], None);
    let r = rootfs();
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let (r, start) = (r.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                isola(&["run", "-d", "--name", "e2e-race", "--rootfs", &r, "--", "sleep", "1000"], None)
            })
        })
        .collect();
    let results: Vec<(String, String, i32)> = racers.into_iter().map(|t| t.join().expect("racer")).collect();
    let winners = results.iter().filter(|(_, _, code)| *code == 0).count();
    let lost = results.iter().find(|(_, _, code)| *code != 0);
    let (_, _, rm_code) = isola(&["exec", "e2e-race", "--", "true"], None);
    let (_, rm_err, rm) = isola(&["rm", "-f", "e2e-race"], None);
    assert_eq!(winners, 1, "exactly one run gets the name: {results:?}");
    let (_, err, _) = lost.expect("one run lost");
    assert!(err.contains("already exists"), "the loser is told the name is taken: {err}");
    assert_eq!(rm_code, 0, "the winner's sandbox still works after the race");
    assert_eq!(rm, 0, "{rm_err}");
    assert_gone("e2e-race");
}

/// A container as a non-root user starts (the bounding set is cut while we still may,
/// then the ids change) with the spec's bounding set, as runc does.
#[test]
fn a_non_root_user_starts_with_the_specs_bounding_set() {
    let script = "id -u; id -g; grep '^CapBnd' /proc/self/status";
    let args = ["run", "--name", "e2e-user", "-u", "1000:1000", "--rootfs", &rootfs(), "--", "sh", "-c", script];
    let (out, err, code) = isola(&args, None);
    assert_eq!(code, 0, "{out}\n{err}");
    // The runtime-spec defaults: AUDIT_WRITE, KILL, NET_BIND_SERVICE.
    let mask = (1u64 << 29) | (1 << 5) | (1 << 10);
    assert_eq!(out, format!("1000\n1000\nCapBnd:\t{mask:016x}\n"), "{err}");
    assert_gone("e2e-user");
}

/// What privileged workloads build inside their VM: a bridge with a veth pair on it,
/// and the IPv4 netfilter and bridge-netfilter tables (issue 14 item 9: the guest
/// kernel had no bridge, so this failed with ENOPKG). Without NET_ADMIN it is refused.
#[test]
fn a_net_admin_container_builds_a_bridge_and_a_veth_pair_in_its_vm() {
    let r = rootfs();
    let script = "ip link add br0 type bridge && ip link add v0 type veth peer name v1 && \
                  ip link set v0 master br0 && ls /sys/class/net/br0/brif && \
                  cat /proc/net/ip_tables_names /proc/sys/net/bridge/bridge-nf-call-iptables >/dev/null && echo tables";
    let (out, err, code) = isola(
        &["run", "--name", "e2e-bridge", "--cap-add", "NET_ADMIN", "--rootfs", &r, "--", "sh", "-c", script],
        None,
    );
    assert_eq!((out.as_str(), code), ("v0\ntables\n", 0), "stderr: {err}");
    assert_gone("e2e-bridge");
    let (_, err, code) = isola(
        &["run", "--name", "e2e-nobridge", "--rootfs", &r, "--", "ip", "link", "add", "br0", "type", "bridge"],
        None,
    );
    assert_ne!(code, 0, "a bridge without NET_ADMIN: {err}");
    assert!(err.contains("ermitted"), "refused as not permitted: {err}");
    assert_gone("e2e-nobridge");
}
