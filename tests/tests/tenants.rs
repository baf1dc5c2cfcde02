//! Tenants against each other on the host, tried as an attacker would: a helper of
//! sandbox A taken over by its guest runs as A's uid; as that uid it must not connect
//! to B's agent socket, open B's processes' memory, signal them or read B's files. A
//! local user must not read any sandbox's files. Controls show each probe works where
//! it should (as B's own uid, or as root), so every refusal is the separation's doing.

use std::path::Path;
use std::process::Command;

use isola_e2e::{busybox_rootfs, isola};
use isola_sandbox::state::{self, SandboxState};

struct Removed(&'static str);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = isola(&["rm", "-f", self.0], None);
    }
}

/// `script` in sh as `uid`:`uid` with no groups and no capabilities: whether it succeeded.
fn as_uid(uid: u32, script: &str) -> bool {
    let out = Command::new("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()])
        .args(["/bin/sh", "-c", script])
        .output()
        .expect("setpriv");
    out.status.success()
}

/// Connecting to a unix socket from the shell needs a client: python3's.
fn connect(path: &Path) -> String {
    assert!(Path::new("/usr/bin/python3").exists(), "the probe needs /usr/bin/python3");
    format!(
        "/usr/bin/python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' {}",
        path.display()
    )
}

/// Every process of the sandbox the host started: its VMM (and the jailed child of
/// isola-vmm's supervisor), and its helpers, virtiofsd's children included.
fn processes(st: &SandboxState) -> Vec<i32> {
    let mut all = vec![st.vmm_pid];
    all.extend(&st.helper_pids);
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        let kids = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        all.extend(kids.split_whitespace().filter_map(|k| k.parse::<i32>().ok()));
        i += 1;
    }
    all
}

/// The program's name as it was started (argv[0]'s base name: helpers run from a
/// descriptor keep their real path there).
fn name_of(pid: i32) -> String {
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
    argv0.rsplit('/').next().unwrap_or_default().to_string()
}

fn owner_of(path: &str) -> u32 {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

#[test]
fn one_sandboxs_uid_reaches_nothing_of_another_and_a_local_user_reads_nothing() {
    let (a, b) = ("e2e-tenant-a", "e2e-tenant-b");
    let (_ra, _rb) = (Removed(a), Removed(b));
    let vol = tempfile::tempdir().expect("volume");
    let v = format!("{}:/data", vol.path().display());
    let r = busybox_rootfs().display().to_string();
    for n in [a, b] {
        // B publishes a port, so its forwarder is among the processes checked.
        let p: &[&str] = if n == b { &["-p", "127.0.0.1:18437:80"] } else { &[] };
        let args = [&["run", "-d", "--name", n, "-v", &v, "--rootfs", &r][..], p, &["--", "sleep", "600"]].concat();
        let (out, err, code) = isola(&args, None);
        assert_eq!(code, 0, "{n}: {out}{err}");
    }
    let dir = |n: &str| state::default_root().join(n);
    let (sa, sb) = (SandboxState::load(&dir(a)).expect("A"), SandboxState::load(&dir(b)).expect("B"));
    let (ua, ub) = (sa.uid.expect("A's uid"), sb.uid.expect("B's uid"));
    assert_ne!(ua, ub, "each sandbox has its own uid");

    // Every process of each sandbox runs as its own uid (virtiofsd serves as root),
    // under seccomp with no_new_privs and no capabilities.
    for (st, uid) in [(&sa, ua), (&sb, ub)] {
        for pid in processes(st) {
            let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let field = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).unwrap_or("").trim().to_string();
            if s.is_empty() {
                continue;
            }
            if name_of(pid) == "virtiofsd" {
                // Root, with exactly the documented capabilities (its parent, which
                // only waits, with none).
                let want = isola_sandbox::backend::virtiofsd::KEPT_CAPS.iter().fold(0u64, |m, c| m | 1 << c);
                let eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap_or(u64::MAX);
                assert!(eff == want || eff == 0, "virtiofsd {pid}: CapEff {eff:#x}, documented {want:#x}");
                assert_eq!((field("Seccomp:"), field("NoNewPrivs:")), ("2".into(), "1".into()), "{s}");
                continue;
            }
            assert_eq!(field("Uid:").split_whitespace().next(), Some(uid.to_string().as_str()), "{s}");
            assert_eq!((field("Seccomp:"), field("NoNewPrivs:")), ("2".into(), "1".into()), "{s}");
            assert_eq!(field("CapEff:"), "0000000000000000", "{s}");
            // Our own helpers add an allow-list on top of the helpers' two filters.
            if matches!(name_of(pid).as_str(), "isola-console" | "isola-ports") {
                let filters: u32 = field("Seccomp_filters:").parse().unwrap_or(0);
                assert!(filters >= 3, "{} runs without its own allow-list: {s}", name_of(pid));
            }
        }
    }
    let names: Vec<String> = processes(&sb).into_iter().map(name_of).collect();
    for helper in ["isola-ports", "vhost-device-vsock"] {
        assert!(names.iter().any(|n| n == helper), "B has no {helper}: {names:?}");
    }

    // As A's uid, against B: the agent socket, the memory of every process of B's,
    // signals, B's files.
    let b_sock = sb.vsock_uds.clone();
    assert!(!as_uid(ua, &connect(&b_sock)), "A's uid connected to B's agent socket");
    assert!(as_uid(ub, &connect(&b_sock)), "control: B's own uid reaches it (the probe works)");
    for pid in processes(&sb) {
        let name = name_of(pid);
        assert!(!as_uid(ua, &format!("exec 3</proc/{pid}/mem")), "A's uid opened {name} ({pid})'s memory");
        assert!(!as_uid(ua, &format!("kill -0 {pid}")), "A's uid may signal {name} ({pid})");
    }
    let vmm = sb.vmm_pid;
    assert!(as_uid(ub, &format!("kill -0 {vmm}")), "control: B's uid may signal its own VMM");
    // Non-dumpable (QEMU by its id change, isola-vmm by its own prctl as well,
    // vhost-device-vsock, isola-ports and isola-console from execute-only copies): not
    // even B's own uid opens the memory of any of B's processes.
    for pid in processes(&sb) {
        let name = name_of(pid);
        if name != "virtiofsd" {
            assert_eq!(owner_of(&format!("/proc/{pid}/mem")), 0, "{name} ({pid}) is not dumpable");
            assert!(!as_uid(ub, &format!("exec 3</proc/{pid}/mem")), "B's uid opened {name}'s memory");
        }
    }
    let b_dir = dir(b).display().to_string();
    for who in [ua, 1000] {
        for what in ["ls {d}", "cat {d}/state.json", "ls {d}/shared", "cat {d}/console.log", "ls {d}/vsock"] {
            let script = what.replace("{d}", &b_dir);
            assert!(!as_uid(who, &script), "uid {who} could `{script}`");
        }
    }
    // The VMM's control socket (QMP under QEMU, isola-vmm's control API): resizing or
    // stopping B's VM is for root alone.
    let controls: Vec<String> = [isola_sandbox::sandbox::QMP_SOCK, isola_sandbox::sandbox::API_SOCK]
        .iter()
        .map(|s| format!("{b_dir}/{s}"))
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(!controls.is_empty(), "B's VMM has a control socket (its balloon's)");
    for sock in &controls {
        for who in [ua, ub, 1000] {
            assert!(!as_uid(who, &connect(Path::new(sock))), "uid {who} connected to {sock}");
        }
        let probe = Command::new("sh").args(["-c", &connect(Path::new(sock))]).status().expect("sh");
        assert!(probe.success(), "control: root reaches {sock} (the probe works)");
    }
    let root = Command::new("ls").arg(format!("{b_dir}/shared")).status().expect("ls");
    assert!(root.success(), "control: root lists the share");

    // The uid goes back with its sandbox, and no process of it is left.
    let (_, err, code) = isola(&["rm", "-f", b], None);
    assert_eq!(code, 0, "{err}");
    assert!(!isola_sandbox::identity::default_leases().join(ub.to_string()).exists(), "B's lease is gone");
    // Killed with SIGKILL: they may take a moment to finish exiting.
    let remaining = || Command::new("pgrep").args(["-u", &ub.to_string()]).output().expect("pgrep");
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !remaining().status.success()
    });
    assert!(gone, "processes of B's uid remain: {}", String::from_utf8_lossy(&remaining().stdout));
}
