//! The real agent binary on this host (as root, in a private mount namespace), over a
//! unix socket speaking the hybrid-vsock handshake, launching real containers from a
//! busybox rootfs built by scripts/busybox-rootfs.sh.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use isola_protocol::client::AgentClient;
use isola_protocol::{ContainerStatus, ErrorCode, Request, Response, RootfsSource, StdioStream};
use oci_spec::runtime::Spec;

struct HostAgent {
    child: Child,
    dir: tempfile::TempDir,
}

impl HostAgent {
    fn start() -> Self {
        assert!(nix::unistd::geteuid().is_root(), "the host agent test needs root (it does not skip)");
        let dir = tempfile::tempdir().expect("tmp");
        let sock = dir.path().join("agent.sock");
        let cg = dir.path().join("cgroup");
        std::fs::create_dir_all(&cg).expect("cg dir");
        let script = format!(
            "mount -t tmpfs tmpfs {state} -o mkdir=0755 2>/dev/null || mount -t tmpfs tmpfs {state}; mount -t cgroup2 none {cg} && exec {agent} --unix {sock} --state-dir {state} --cgroup-root {cg}/isola",
            state = dir.path().join("state").display(),
            cg = cg.display(),
            agent = env!("CARGO_BIN_EXE_isola-agent"),
            sock = sock.display(),
        );
        std::fs::create_dir_all(dir.path().join("state")).expect("state");
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) runs the agent");
        Self { child, dir }
    }

    fn client(&self) -> AgentClient {
        AgentClient::connect_when_ready(
            &self.dir.path().join("agent.sock"),
            Duration::from_secs(10),
            Duration::from_secs(10),
        )
        .expect("agent answers ping")
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn busybox_rootfs() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_busybox_rootfs).clone()
}

fn build_busybox_rootfs() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-rootfs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-rootfs.sh");
    let out = Command::new(script).arg(&dir).output().expect("busybox-rootfs.sh");
    assert!(out.status.success(), "busybox rootfs: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn upload(c: &AgentClient, id: &str, rootfs: &Path) {
    let mut s = c.upload_rootfs(id).expect("upload connection");
    let mut b = tar::Builder::new(&mut s);
    b.follow_symlinks(false);
    b.append_dir_all(".", rootfs).expect("tar rootfs");
    b.finish().expect("finish tar");
    drop(b);
    let r: Response = isola_protocol::frame::read_frame(&mut s).expect("upload result");
    assert_eq!(r, Response::Ok);
}

fn spec(args: &[&str]) -> Spec {
    let mut spec = Spec::default();
    let mut p = spec.process().clone().expect("process");
    p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    p.set_env(Some(vec!["PATH=/bin".into(), "GREETING=hello".into()]));
    spec.set_process(Some(p));
    spec.set_hostname(Some("boxy".into()));
    // oci-spec's default root is read-only; these containers write.
    let mut root = spec.root().clone().expect("root");
    root.set_readonly(Some(false));
    spec.set_root(Some(root));
    spec
}

/// Creates, attaches stdout+stderr, starts, waits. Returns (stdout, stderr, exit code).
fn run(c: &mut AgentClient, id: &str, args: &[&str], rootfs: &Path) -> (String, String, i32) {
    upload(c, id, rootfs);
    run_spec(c, id, spec(args), RootfsSource::Upload)
}

fn run_spec(c: &mut AgentClient, id: &str, spec: Spec, rootfs: RootfsSource) -> (String, String, i32) {
    let r = c.call(&Request::CreateContainer { id: id.into(), spec: Box::new(spec), rootfs }).expect("create");
    assert!(matches!(r, Response::Started { .. }), "{r:?}");
    let mut out = c.attach(id, None, StdioStream::Stdout).expect("stdout");
    let mut err = c.attach(id, None, StdioStream::Stderr).expect("stderr");
    c.call(&Request::Start { id: id.into(), exec_id: None }).expect("start");
    let mut o = String::new();
    out.read_to_string(&mut o).expect("read stdout");
    let mut e = String::new();
    err.read_to_string(&mut e).expect("read stderr");
    let Response::Exited { status } = c.call_with(&Request::Wait { id: id.into(), exec_id: None }, None).expect("wait")
    else {
        panic!("wait reply")
    };
    (o, e, status.code)
}

#[test]
fn containers_run_with_isolation_stdio_and_exit_codes() {
    let rootfs = busybox_rootfs();
    let agent = HostAgent::start();
    let mut c = agent.client();
    let (out, err, code) = run(&mut c, "c1", &["sh", "-c", "echo hello; echo oops >&2; exit 3"], &rootfs);
    assert_eq!((out.as_str(), err.as_str(), code), ("hello\n", "oops\n", 3));

    // Fresh PID and UTS namespaces, our hostname and /etc/hosts, the spec's env.
    let (out, _, code) =
        run(&mut c, "c2", &["sh", "-c", "echo $$ $(hostname) $GREETING; grep boxy /etc/hosts"], &rootfs);
    assert_eq!(code, 0);
    assert!(out.starts_with("1 boxy hello\n"), "{out}");
    assert!(out.contains("127.0.1.1\tboxy"), "{out}");

    // The image is read-only underneath: writes land in the container's upper layer.
    let (_, _, code) = run(&mut c, "c3", &["sh", "-c", "echo x > /bin/new-file"], &rootfs);
    assert_eq!(code, 0);
    assert!(!rootfs.join("bin/new-file").exists());

    // A signal from the host reaches the container's init (PID 1 there, so only
    // through a handler it installed, as with runc).
    upload(&c, "c4", &rootfs);
    let trap = ["sh", "-c", "trap 'echo got TERM; exit 9' TERM; echo armed; while true; do sleep 0.05; done"];
    c.call(&Request::CreateContainer { id: "c4".into(), spec: Box::new(spec(&trap)), rootfs: RootfsSource::Upload })
        .expect("create");
    let mut out = c.attach("c4", None, StdioStream::Stdout).expect("stdout");
    c.call(&Request::Start { id: "c4".into(), exec_id: None }).expect("start");
    let mut armed = [0u8; 6];
    out.read_exact(&mut armed).expect("armed");
    c.call_ok(&Request::Signal { id: "c4".into(), exec_id: None, signal: 15, all: false }).expect("signal");
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("rest");
    assert_eq!(rest, "got TERM\n");
    let Response::Exited { status } =
        c.call_with(&Request::Wait { id: "c4".into(), exec_id: None }, None).expect("wait")
    else {
        panic!()
    };
    assert_eq!(status.code, 9);

    // A TERM sent right after Start, before the program has its handler (CRI's stop of
    // a container just started): kept, and delivered once the handler is there; the
    // kernel would have dropped it, as it does for a namespace's init without one.
    upload(&c, "c4b", &rootfs);
    let late = "sleep 1; trap 'echo late TERM; exit 7' TERM; echo armed; for i in $(seq 100); do sleep 0.05; done; echo no TERM";
    let created = c
        .call(&Request::CreateContainer {
            id: "c4b".into(),
            spec: Box::new(spec(&["sh", "-c", late])),
            rootfs: RootfsSource::Upload,
        })
        .expect("create");
    let Response::Started { pid } = created else { panic!("{created:?}") };
    let mut out = c.attach("c4b", None, StdioStream::Stdout).expect("stdout");
    c.call(&Request::Start { id: "c4b".into(), exec_id: None }).expect("start");
    // Start returns once the program runs (after its exec), not while our helper still
    // prepares it: a Pids or a signal right after Start finds the program.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the process is there");
    assert!(cmdline.starts_with(b"sh\0-c\0"), "{:?}", String::from_utf8_lossy(&cmdline));
    c.call_ok(&Request::Signal { id: "c4b".into(), exec_id: None, signal: 15, all: false }).expect("signal");
    let mut text = String::new();
    out.read_to_string(&mut text).expect("output");
    assert_eq!(text, "armed\nlate TERM\n", "delivered once, to the handler");
    let Response::Exited { status } =
        c.call_with(&Request::Wait { id: "c4b".into(), exec_id: None }, Some(Duration::from_secs(30))).expect("wait")
    else {
        panic!()
    };
    assert_eq!(status.code, 7);

    // A missing program fails Create (as with runc), by name; not found in PATH either.
    upload(&c, "c5", &rootfs);
    let e = c
        .call(&Request::CreateContainer {
            id: "c5".into(),
            spec: Box::new(spec(&["/bin/nope"])),
            rootfs: RootfsSource::Upload,
        })
        .expect_err("create fails");
    assert!(e.to_string().contains("\"/bin/nope\": no such executable file"), "{e}");
    upload(&c, "c6", &rootfs);
    let e = c
        .call(&Request::CreateContainer {
            id: "c6".into(),
            spec: Box::new(spec(&["nope"])),
            rootfs: RootfsSource::Upload,
        })
        .expect_err("create fails");
    assert!(e.to_string().contains("executable file not found in $PATH"), "{e}");

    let Response::List { containers } = c.call(&Request::List).expect("list") else { panic!("list") };
    assert!(
        containers.iter().all(|c| c.id != "c5" && c.id != "c6"),
        "a failed create leaves no container: {containers:?}"
    );
    assert!(containers.iter().all(|c| c.status == ContainerStatus::Stopped), "{containers:?}");
    for id in ["c1", "c2", "c3", "c4", "c4b"] {
        c.call_ok(&Request::Delete { id: id.into(), force: false }).expect("delete");
    }
    let Response::List { containers } = c.call(&Request::List).expect("list") else { panic!("list") };
    assert!(containers.is_empty());
    assert_eq!(
        std::fs::read_dir(agent.dir.path().join("state/containers")).map(|d| d.count()).unwrap_or(0),
        0,
        "state cleaned"
    );
}

/// A bundle's rootfs (Docker's, podman's, containerd's) is the container's own layer:
/// its writes land there and stay after the container is deleted; the /etc files the
/// sandbox provides are bound over, not written into it; `root.readonly` refuses writes.
#[test]
fn an_in_place_rootfs_keeps_the_containers_writes_and_a_readonly_root_refuses_them() {
    let agent = HostAgent::start();
    let mut c = agent.client();
    let layer = tempfile::tempdir().expect("layer");
    let copied =
        Command::new("cp").arg("-a").arg(format!("{}/.", busybox_rootfs().display())).arg(layer.path()).status();
    assert!(copied.expect("cp").success());
    let hosts = layer.path().join("etc/hosts");
    let hosts_before = std::fs::read(&hosts).ok();
    let source = || RootfsSource::GuestPath { path: layer.path().display().to_string(), in_place: true };
    let (out, err, code) =
        run_spec(&mut c, "w1", spec(&["sh", "-c", "echo persisted > /f && grep boxy /etc/hosts"]), source());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("127.0.1.1\tboxy"), "the sandbox's names are seen: {out}");
    c.call_ok(&Request::Delete { id: "w1".into(), force: false }).expect("delete");
    assert_eq!(std::fs::read_to_string(layer.path().join("f")).expect("the write landed"), "persisted\n");
    let hosts_after = std::fs::read(&hosts).ok();
    assert!(
        hosts_after == hosts_before || (hosts_before.is_none() && hosts_after.as_deref() == Some(&b""[..])),
        "the bundle's /etc/hosts is not written: {hosts_after:?}"
    );

    let mut ro = spec(&["sh", "-c", "cat /f && touch /g"]);
    let mut root = ro.root().clone().expect("root");
    root.set_readonly(Some(true));
    ro.set_root(Some(root));
    let (out, err, code) = run_spec(&mut c, "w2", ro, source());
    assert_eq!(out, "persisted\n");
    assert!(code != 0 && err.contains("Read-only file system"), "{code}: {err}");
    assert!(!layer.path().join("g").exists());
    c.call_ok(&Request::Delete { id: "w2".into(), force: false }).expect("delete");
    assert!(layer.path().join("bin/sh").exists(), "deleting the container leaves its layer");
}

#[test]
fn stdin_exec_signals_and_bad_requests() {
    let rootfs = busybox_rootfs();
    let agent = HostAgent::start();
    let mut c = agent.client();
    upload(&c, "cat", &rootfs);
    c.call(&Request::CreateContainer {
        id: "cat".into(),
        spec: Box::new(spec(&["sh", "-c", "cat; sleep 1000"])),
        rootfs: RootfsSource::Upload,
    })
    .expect("create");
    let mut input = c.attach("cat", None, StdioStream::Stdin).expect("stdin");
    let mut out = c.attach("cat", None, StdioStream::Stdout).expect("stdout");
    c.call(&Request::Start { id: "cat".into(), exec_id: None }).expect("start");
    input.write_all(b"piped through\n").expect("write stdin");
    input.shutdown(std::net::Shutdown::Write).expect("close stdin");
    let mut buf = [0u8; 14];
    out.read_exact(&mut buf).expect("echoed");
    assert_eq!(&buf, b"piped through\n");

    // exec joins the container's PID namespace: it sees `sleep` but not host processes.
    let mut p = spec(&["sh", "-c", "ps -o comm | grep -c sleep; exit 7"]).process().clone().expect("process");
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "ps -o comm | grep -c sleep; ls /proc | grep -c '^[0-9]'; exit 7".into(),
    ]));
    c.call(&Request::Exec { id: "cat".into(), exec_id: "e1".into(), process: Box::new(p) }).expect("exec");
    let mut eout = c.attach("cat", Some("e1"), StdioStream::Stdout).expect("exec stdout");
    c.call(&Request::Start { id: "cat".into(), exec_id: Some("e1".into()) }).expect("start exec");
    let mut s = String::new();
    eout.read_to_string(&mut s).expect("exec output");
    let Response::Exited { status } =
        c.call_with(&Request::Wait { id: "cat".into(), exec_id: Some("e1".into()) }, None).expect("wait")
    else {
        panic!()
    };
    assert_eq!(status.code, 7);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "1", "{s}");
    let procs: u32 = lines[1].parse().expect("count");
    assert!(procs < 10, "only the container's processes are visible: {s}");

    // Running containers are not deleted without force; SIGKILL gives 137.
    let e = c.call(&Request::Delete { id: "cat".into(), force: false }).expect_err("running");
    assert!(
        matches!(e, isola_protocol::client::ClientError::Agent(ref a) if a.code == ErrorCode::FailedPrecondition),
        "{e}"
    );
    c.call_ok(&Request::Signal { id: "cat".into(), exec_id: None, signal: 9, all: false }).expect("kill");
    let Response::Exited { status } =
        c.call_with(&Request::Wait { id: "cat".into(), exec_id: None }, None).expect("wait")
    else {
        panic!()
    };
    assert_eq!((status.code, status.signal), (137, Some(9)));

    // Hostile or malformed input gets an error reply and the agent keeps serving.
    let e = c.call(&Request::CreateContainer {
        id: "../evil".into(),
        spec: Box::new(spec(&["sh"])),
        rootfs: RootfsSource::Upload,
    });
    assert!(e.is_err());
    let e = c.call(&Request::CreateContainer {
        id: "x".into(),
        spec: Box::new(spec(&["sh"])),
        rootfs: RootfsSource::GuestPath { path: "relative/path".into(), in_place: false },
    });
    assert!(e.expect_err("relative").to_string().contains("not a directory"));
    c.ping().expect("still alive");
    c.call_ok(&Request::Delete { id: "cat".into(), force: true }).expect("delete");
}

#[test]
fn a_terminal_session_ends_when_the_process_exits() {
    let agent = HostAgent::start();
    let mut c = agent.client();
    let rootfs = busybox_rootfs();
    upload(&c, "tty1", &rootfs);
    let mut s = spec(&["sh", "-c", "tty; stty size; echo hi; exit 4"]);
    let mut p = s.process().clone().expect("process");
    p.set_terminal(Some(true));
    s.set_process(Some(p));
    let r = c
        .call(&Request::CreateContainer { id: "tty1".into(), spec: Box::new(s), rootfs: RootfsSource::Upload })
        .expect("create");
    assert!(matches!(r, Response::Started { .. }), "{r:?}");
    let mut tty = c.attach("tty1", None, StdioStream::Tty).expect("tty");
    c.call(&Request::ResizeTty { id: "tty1".into(), exec_id: None, rows: 33, cols: 101 }).expect("resize");
    tty.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    c.call(&Request::Start { id: "tty1".into(), exec_id: None }).expect("start");
    let mut out = String::new();
    tty.read_to_string(&mut out).expect("the terminal reaches EOF when the process exits");
    let Response::Exited { status } =
        c.call_with(&Request::Wait { id: "tty1".into(), exec_id: None }, None).expect("wait")
    else {
        panic!("wait reply")
    };
    assert_eq!(status.code, 4);
    assert!(out.contains("/dev/pts/0"), "the container's own devpts: {out:?}");
    assert!(out.contains("33 101"), "{out:?}");
    assert!(out.contains("hi\r\n"), "terminal line discipline: {out:?}");
}

#[test]
fn the_specs_seccomp_profile_is_enforced_and_bad_profiles_are_refused() {
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};
    let agent = HostAgent::start();
    let mut c = agent.client();
    let rootfs = busybox_rootfs();
    let with_profile = |args: &[&str], action: LinuxSeccompAction| {
        let mut s = spec(args);
        let mut linux = s.linux().clone().expect("linux");
        let rule = LinuxSyscallBuilder::default()
            .names(vec!["mkdir".to_string(), "mkdirat".to_string()])
            .action(action)
            .errno_ret(13u32)
            .build()
            .expect("rule");
        let profile = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![rule])
            .build()
            .expect("profile");
        linux.set_seccomp(Some(profile));
        s.set_linux(Some(linux));
        s
    };
    upload(&c, "sc1", &rootfs);
    let s = with_profile(
        &["sh", "-c", "mkdir /tmp/nope; echo rc=$?; touch /tmp/file && echo touched"],
        LinuxSeccompAction::ScmpActErrno,
    );
    let r = c
        .call(&Request::CreateContainer { id: "sc1".into(), spec: Box::new(s), rootfs: RootfsSource::Upload })
        .expect("create");
    assert!(matches!(r, Response::Started { .. }), "{r:?}");
    let mut out = c.attach("sc1", None, StdioStream::Stdout).expect("stdout");
    let mut err = c.attach("sc1", None, StdioStream::Stderr).expect("stderr");
    c.call(&Request::Start { id: "sc1".into(), exec_id: None }).expect("start");
    let (mut o, mut e) = (String::new(), String::new());
    out.read_to_string(&mut o).expect("stdout");
    err.read_to_string(&mut e).expect("stderr");
    assert_eq!(o, "rc=1\ntouched\n", "stderr: {e}");
    assert!(e.contains("Permission denied"), "the profile's errno (EACCES): {e}");

    upload(&c, "sc2", &rootfs);
    let s = with_profile(&["true"], LinuxSeccompAction::ScmpActNotify);
    let e = c
        .call(&Request::CreateContainer { id: "sc2".into(), spec: Box::new(s), rootfs: RootfsSource::Upload })
        .expect_err("notify is refused");
    assert!(e.to_string().contains("not supported"), "{e}");
}

#[test]
fn a_user_namespace_maps_root_to_an_unprivileged_host_range() {
    use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType};
    let agent = HostAgent::start();
    let mut c = agent.client();
    let rootfs = busybox_rootfs();
    upload(&c, "userns1", &rootfs);
    let mut s = spec(&["sh", "-c", "id -u; cat /proc/self/uid_map; cat /proc/self/gid_map; sleep 30"]);
    let mut linux = s.linux().clone().expect("linux");
    let mut namespaces = linux.namespaces().clone().expect("namespaces");
    namespaces.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User).build().expect("ns"));
    linux.set_namespaces(Some(namespaces));
    let map =
        LinuxIdMappingBuilder::default().container_id(0u32).host_id(200_000u32).size(65_536u32).build().expect("map");
    linux.set_uid_mappings(Some(vec![map]));
    linux.set_gid_mappings(Some(vec![map]));
    s.set_linux(Some(linux));
    let r = c
        .call(&Request::CreateContainer { id: "userns1".into(), spec: Box::new(s), rootfs: RootfsSource::Upload })
        .expect("create");
    let Response::Started { pid } = r else { panic!("{r:?}") };
    let mut out = c.attach("userns1", None, StdioStream::Stdout).expect("stdout");
    let mut err = c.attach("userns1", None, StdioStream::Stderr).expect("stderr");
    c.call(&Request::Start { id: "userns1".into(), exec_id: None }).expect("start");
    let mut buf = vec![0u8; 4096];
    let mut o = String::new();
    while o.lines().count() < 3 {
        let n = out.read(&mut buf).expect("stdout");
        assert!(n > 0, "stdout ended early: {o:?}");
        o.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let lines: Vec<Vec<&str>> = o.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["0"], "root inside: {o}");
    assert_eq!(lines[1], ["0", "200000", "65536"], "{o}");
    assert_eq!(lines[2], ["0", "200000", "65536"], "{o}");
    // Seen from the host, the container's root is uid 200000.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid line");
    assert!(uid_line.split_whitespace().nth(1) == Some("200000"), "{uid_line}");
    // exec joins the same user namespace.
    let proc_ = oci_spec::runtime::ProcessBuilder::default()
        .args(vec!["sh".to_string(), "-c".to_string(), "id -u; cat /proc/self/uid_map".to_string()])
        .env(vec!["PATH=/bin".to_string()])
        .cwd("/")
        .build()
        .expect("process");
    c.call(&Request::Exec { id: "userns1".into(), exec_id: "e1".into(), process: Box::new(proc_) }).expect("exec");
    let mut eo = c.attach("userns1", Some("e1"), StdioStream::Stdout).expect("exec stdout");
    c.call(&Request::Start { id: "userns1".into(), exec_id: Some("e1".into()) }).expect("start exec");
    let mut e_out = String::new();
    eo.read_to_string(&mut e_out).expect("exec output");
    assert_eq!(e_out.split_whitespace().collect::<Vec<_>>(), ["0", "0", "200000", "65536"], "{e_out}");
    c.call(&Request::Signal { id: "userns1".into(), exec_id: None, signal: 9, all: false }).expect("kill");
    let mut e = String::new();
    let _ = err.read_to_string(&mut e);
}
