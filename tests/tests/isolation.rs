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

/// The probe `tests/probes/NAME.c`, built static (so it runs in the busybox rootfs)
/// into a directory of its own, as `NAME`.
fn probe(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("probe dir");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("probes/{name}.c"));
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.path().join(name))
        .arg(&src)
        .output()
        .expect("gcc (build-essential)");
    assert!(out.status.success(), "building {name}: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn run_probe(name: &str, extra: &[&str]) -> String {
    let probes = probe("vsock_probe");
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

/// A default container cannot make a user namespace by clone (the guest kernel has
/// them: unconfined, it can), while a plain fork still works.
#[test]
fn a_default_container_cannot_make_a_user_namespace() {
    let dir = probe("userns_probe");
    let vol = format!("{}:/probe:ro", dir.path().display());
    let r = busybox_rootfs().display().to_string();
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec!["run", "--name", name, "--network", "none", "-v", &vol, "--rootfs", &r];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "/probe/userns_probe"]);
        let (out, err, code) = isola(&args, None);
        assert_eq!(code, 0, "{out}{err}");
        out
    };
    let out = run("e2e-userns", &[]);
    assert!(out.contains("userns refused Operation not permitted"), "{out}");
    assert!(out.contains("fork ok"), "{out}");
    let out = run("e2e-userns-unconfined", &["--security-opt", "seccomp=unconfined"]);
    assert!(out.contains("userns ok"), "control: the guest kernel has user namespaces: {out}");
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

fn status_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

fn status_field(status: &str, key: &str) -> String {
    status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or("").to_string()
}

fn children_of(pid: i32) -> Vec<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

fn memory_cgroup_of(pid: i32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let v1 = text.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()));
    v1.or_else(|| text.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string))).unwrap_or_default()
}

fn ns_of(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).map(|p| p.display().to_string()).unwrap_or_default()
}

fn assert_unprivileged(what: &str, s: &str, uid: u32) {
    let uid = uid.to_string();
    assert_eq!(status_field(s, "Uid:").split_whitespace().collect::<Vec<_>>(), [uid.as_str(); 4], "{what}: {s}");
    assert_eq!(status_field(s, "Gid:").split_whitespace().collect::<Vec<_>>(), [uid.as_str(); 4], "{what}: {s}");
    assert_eq!(status_field(s, "Seccomp:"), "2", "{what}: {s}");
    assert_eq!(status_field(s, "CapEff:"), "0000000000000000", "{what}: {s}");
    assert_eq!(status_field(s, "CapPrm:"), "0000000000000000", "{what}: {s}");
    // QEMU keeps what it needed before `-runas` in its bounding set, nothing else.
    let allowed = isola_sandbox::backend::qemu::SANDBOX_CAPS.iter().fold(0u64, |m, c| m | 1 << c);
    let bounding = u64::from_str_radix(&status_field(s, "CapBnd:"), 16).unwrap_or(u64::MAX);
    assert_eq!(bounding & !allowed, 0, "{what}: bounding set {bounding:#x}: {s}");
    assert_eq!(status_field(s, "NoNewPrivs:"), "1", "{what}: {s}");
}

/// Every process of a sandbox runs with the least it needs: one host memory cgroup of
/// guest RAM plus overhead holds them all; the VMM (isola-vmm jailed in its own
/// namespaces, or QEMU chrooted) runs as the sandbox's own uid under seccomp; virtiofsd
/// serves from its namespace sandbox without mknod/setfcap and sees a `:ro` volume
/// read-only, nosuid, nodev; QEMU's helpers run as that uid under seccomp too.
/// Removing the sandbox removes the cgroup.
#[test]
fn every_sandbox_process_is_confined() {
    let _cleanup = Removed("e2e-confined");
    let vol = tempfile::tempdir().expect("volume");
    let v = format!("{}:/data:ro", vol.path().display());
    let r = busybox_rootfs().display().to_string();
    let args = ["run", "-d", "--name", "e2e-confined", "-m", "256", "-v", &v, "--rootfs", &r, "--", "sleep", "1000"];
    let (out, err, code) = isola(&args, None);
    assert_eq!(code, 0, "{out}{err}");
    let st = state::SandboxState::load(&state::default_root().join("e2e-confined")).expect("state");
    let cg = memory_cgroup_of(st.vmm_pid);
    assert!(cg.contains("/isola/e2e-confined-"), "the VMM is in the sandbox's cgroup: {cg:?}");
    for &pid in &st.helper_pids {
        assert_eq!(memory_cgroup_of(pid), cg, "helper {pid} shares the VMM's cgroup");
    }
    let base = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup/memory")
    };
    let dir = base.join(cg.trim_start_matches('/'));
    let limit = ["memory.max", "memory.limit_in_bytes"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .expect("a memory limit file");
    // Guest RAM as the VMM was given it (`-m` plus the guest's own share).
    let argv = std::fs::read(format!("/proc/{}/cmdline", st.vmm_pid)).expect("cmdline");
    let argv: Vec<String> = argv.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let mem_mib: u64 = argv
        .windows(2)
        .find(|w| w[0] == "-m" || w[0] == "--mem-mib")
        .and_then(|w| w[1].trim_end_matches('M').parse().ok())
        .expect("the VMM's memory argument");
    assert!(mem_mib >= 256, "{argv:?}");
    let overhead = isola_sandbox::backend::overhead_bytes(st.hypervisor);
    assert_eq!(limit.trim().parse::<u64>().ok(), Some((mem_mib << 20) + overhead), "limit = guest RAM + overhead");

    let uid = st.uid.expect("the sandbox has a uid of its own");
    let range = isola_sandbox::identity::Range::default();
    assert!((range.first..range.first + range.count).contains(&uid), "{uid} from the sandbox range");
    let vmm = status_of(st.vmm_pid);
    assert_unprivileged("VMM", &vmm, uid);
    match st.hypervisor {
        isola_sandbox::HypervisorKind::IsolaVmm => {
            // The pid on record is the jail's supervisor; the VMM is its only child.
            let jailed = *children_of(st.vmm_pid).first().expect("the jailed VMM");
            let s = status_of(jailed);
            assert_unprivileged("jailed VMM", &s, uid);
            assert_eq!(status_field(&s, "NSpid:").split_whitespace().last(), Some("1"), "{s}");
            for k in ["mnt", "pid", "ipc"] {
                assert_ne!(ns_of("self", k), ns_of(&jailed.to_string(), k), "{k} namespace");
            }
        }
        isola_sandbox::HypervisorKind::Qemu => {
            let root = std::fs::read_dir(format!("/proc/{}/root", st.vmm_pid)).map(|d| d.count()).unwrap_or(99);
            assert_eq!(root, 0, "QEMU is chrooted into an empty directory");
            for &pid in &st.helper_pids {
                let s = status_of(pid);
                let name = status_field(&s, "Name:");
                if name != "virtiofsd" {
                    assert_unprivileged(&name, &s, uid);
                }
            }
        }
    }
    // virtiofsd: the parent waits; its child serves, in its own mount namespace.
    let fsd = st
        .helper_pids
        .iter()
        .copied()
        .find(|&p| status_field(&status_of(p), "Name:") == "virtiofsd")
        .expect("virtiofsd");
    let worker = *children_of(fsd).first().expect("virtiofsd's sandboxed child");
    let ws = status_of(worker);
    assert_eq!(status_field(&ws, "Seccomp:"), "2", "{ws}");
    assert_ne!(ns_of("self", "mnt"), ns_of(&worker.to_string(), "mnt"), "virtiofsd has its own mount namespace");
    let caps = u64::from_str_radix(&status_field(&ws, "CapEff:"), 16).expect("caps");
    assert_eq!(caps & (1 << 27 | 1 << 31), 0, "no CAP_MKNOD or CAP_SETFCAP: {caps:#x}");
    let mounts = std::fs::read_to_string(format!("/proc/{worker}/mountinfo")).expect("virtiofsd's mounts");
    let volume =
        mounts.lines().find(|l| l.contains("/volumes/0")).unwrap_or_else(|| panic!("volume not seen: {mounts}"));
    let opts = volume.split_whitespace().nth(5).unwrap_or("");
    assert!(opts.split(',').any(|o| o == "ro"), "read-only where virtiofsd serves it: {volume}");
    assert!(opts.contains("nosuid") && opts.contains("nodev"), "{volume}");

    let (_, err, code) = isola(&["rm", "-f", "e2e-confined"], None);
    assert_eq!(code, 0, "{err}");
    assert!(!dir.exists(), "the cgroup {} is removed with the sandbox", dir.display());
    let lease = isola_sandbox::identity::default_leases().join(uid.to_string());
    assert!(!lease.exists(), "its uid goes back with it ({})", lease.display());
}

/// Two sandboxes on the bridge, the second one hostile (root with CAP_NET_ADMIN and
/// CAP_NET_RAW in its guest, no seccomp filter): it reaches the outside through NAT,
/// but not its neighbour, not the host's own services (on the gateway or any other
/// host address), not link-local metadata;
/// and once it takes its neighbour's address or another MAC, not even the outside.
/// Controls show each blocked peer does answer those it should.
#[test]
fn a_sandbox_cannot_spoof_or_reach_its_neighbour_the_host_or_metadata() {
    use std::io::BufRead;
    use std::net::Ipv4Addr;
    let _a = Removed("e2e-net-a");
    let _b = Removed("e2e-net-b");
    let mut outside = isola_e2e::outside::Outside::new(2);
    let metadata = Ipv4Addr::new(169, 254, 169, 254);
    outside.add_address(metadata);
    let world = outside.serve(outside.addr, "from-outside\n");
    let meta = outside.serve(metadata, "from-metadata\n");
    let host =
        isola_e2e::outside::Server::start(std::net::TcpListener::bind("0.0.0.0:0").expect("host"), "from-host\n");
    let r = busybox_rootfs().display().to_string();

    let a_script = "while :; do echo from-a | nc -l -p 7000; done";
    let (out, err, code) =
        isola(&["run", "-d", "--name", "e2e-net-a", "--rootfs", &r, "--", "sh", "-c", a_script], None);
    assert_eq!(code, 0, "{out}{err}");
    let a_ip = state::SandboxState::load(&state::default_root().join("e2e-net-a"))
        .expect("state")
        .net
        .expect("a is on the bridge")
        .ip;
    // Control: the host may open connections to a sandbox, and A's server answers.
    let read_a = || -> String {
        let line = || -> Option<String> {
            let c = std::net::TcpStream::connect_timeout(&(a_ip, 7000).into(), Duration::from_secs(3)).ok()?;
            c.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
            let mut line = String::new();
            std::io::BufReader::new(c).read_line(&mut line).ok()?;
            Some(line)
        };
        line().unwrap_or_default()
    };
    let reached = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        read_a() == "from-a\n"
    });
    assert!(reached, "the host reaches A's server at {a_ip}:7000");

    let (o, m, h) = (outside.addr, metadata, host.port);
    let (w, mp) = (world.port, meta.port);
    let hu = outside.host_addr;
    let b_script = format!(
        "try() {{ echo \"$1: $(timeout 6 sh -c \"sleep 1 | nc -w 3 $2 $3\" 2>/dev/null | head -1)\"; }}
         me=$(ip -4 addr show eth0 | grep -o 'inet [0-9./]*' | cut -d' ' -f2); mac=$(cat /sys/class/net/eth0/address)
         try outside {o} {w}; try neighbour {a_ip} 7000; try gateway 10.88.0.1 {h}; try host-uplink {hu} {h}
         try metadata {m} {mp}
         ip addr flush dev eth0; ip addr add {a_ip}/16 dev eth0; ip route add default via 10.88.0.1
         try spoofed-ip {o} {w}
         ip addr flush dev eth0; ip link set eth0 down; ip link set eth0 address 02:00:00:00:00:99; ip link set eth0 up
         ip addr add $me dev eth0; ip route add default via 10.88.0.1; ip neigh flush dev eth0
         echo \"mac: $(cat /sys/class/net/eth0/address)\"; try spoofed-mac {o} {w}
         ip addr flush dev eth0; ip link set eth0 down; ip link set eth0 address $mac; ip link set eth0 up
         ip addr add $me dev eth0; ip route add default via 10.88.0.1; ip neigh flush dev eth0
         try restored {o} {w}"
    );
    // No seccomp filter either: B models a guest whose kernel is the attacker's.
    let caps = ["--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "--security-opt", "seccomp=unconfined"];
    let mut args = vec!["run", "--name", "e2e-net-b"];
    args.extend_from_slice(&caps);
    args.extend_from_slice(&["--rootfs", &r, "--", "sh", "-c", &b_script]);
    let (out, err, code) = isola(&args, None);
    assert_eq!(code, 0, "{out}\n{err}");
    let got =
        |k: &str| out.lines().find_map(|l| l.strip_prefix(&format!("{k}: "))).map(str::to_string).unwrap_or_default();
    assert_eq!(got("outside"), "from-outside", "B reaches the outside through NAT:\n{out}");
    assert_eq!(got("mac"), "02:00:00:00:00:99", "B did take another MAC:\n{out}\n{err}");
    assert_eq!(got("restored"), "from-outside", "with its own MAC and address again, B works:\n{out}");
    for k in ["neighbour", "gateway", "host-uplink", "metadata", "spoofed-ip", "spoofed-mac"] {
        assert_eq!(got(k), "", "{k} must be unreachable from B:\n{out}");
    }
    assert_eq!(host.accepted(), 0, "no connection from B reached a host service");
    assert_eq!(meta.accepted(), 0, "no connection from B reached the metadata address");
    assert_eq!(world.accepted(), 2, "only the two legitimate connections left the host:\n{out}");
    // Control for the host service and metadata: they do answer the host itself.
    assert!(std::net::TcpStream::connect(("127.0.0.1", h)).is_ok());
    assert!(std::net::TcpStream::connect_timeout(&(metadata, mp).into(), Duration::from_secs(3)).is_ok());
    assert_eq!(read_a(), "from-a\n", "A still serves: B's attempts did not disturb it");
}

/// Two sandbox names whose short hash collides (the audit's pair) once shared a tap
/// name, so B's start replaced A's anti-spoofing chain and B's removal deleted it. Now
/// each tap is named from its sandbox's own address: both run with their own tap and
/// chain, and removing B leaves A's in place.
#[test]
fn sandboxes_whose_names_share_a_hash_keep_their_own_taps_and_rules() {
    use isola_sandbox::netfilter::port_chains;
    let (a, b) = ("audtap-ltzla", "audtap-23apa");
    assert_eq!(isola_sandbox::names::name_hash(a), isola_sandbox::names::name_hash(b), "the colliding pair");
    let (_ra, _rb) = (Removed(a), Removed(b));
    let r = busybox_rootfs().display().to_string();
    for n in [a, b] {
        let (out, err, code) = isola(&["run", "-d", "--name", n, "--rootfs", &r, "--", "sleep", "600"], None);
        assert_eq!(code, 0, "{n}: {out}{err}");
    }
    let tap = |n: &str| {
        let st = state::SandboxState::load(&state::default_root().join(n)).expect("state");
        st.net.expect("on the bridge").tap
    };
    let (ta, tb) = (tap(a), tap(b));
    assert_ne!(ta, tb, "each has its own tap");
    let chains = port_chains();
    assert!(chains.contains(&ta) && chains.contains(&tb), "each has its own chain: {chains:?}");
    let (_, err, code) = isola(&["rm", "-f", b], None);
    assert_eq!(code, 0, "{err}");
    let chains = port_chains();
    assert!(chains.contains(&ta) && !chains.contains(&tb), "B's removal leaves A's rules: {chains:?}");
    assert!(std::path::Path::new("/sys/class/net").join(&ta).exists(), "and A's tap");
    let (_, err, code) = isola(&["rm", "-f", a], None);
    assert_eq!(code, 0, "{err}");
    assert!(!port_chains().contains(&ta));
}

/// A container (default capabilities, root in its VM) tries to leave a root set-uid or
/// set-gid program in a root-owned read-write volume: virtiofsd refuses the mode, the
/// host file has no set-id bit, and a local user running it stays who they are.
#[test]
fn a_guest_cannot_plant_a_set_id_program_in_a_host_volume() {
    let vol = tempfile::tempdir().expect("volume");
    let v = format!("{}:/data", vol.path().display());
    let probes = probe("setcap_probe");
    let p = format!("{}:/probe:ro", probes.path().display());
    let r = busybox_rootfs().display().to_string();
    // A root set-uid program the host already has on the volume.
    let planted = vol.path().join("host-suid");
    std::fs::copy("/bin/true", &planted).expect("host-suid");
    std::fs::set_permissions(&planted, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).expect("chmod");
    // Named busybox: the multi-call binary picks its applet by that name.
    let script = "cp /bin/busybox /data/busybox; cd /data; chmod 4755 busybox; echo rc4=$?; chmod 6755 busybox; \
                  echo rc6=$?; chmod 2755 busybox; echo rc2=$?; chmod 755 busybox; echo rc0=$?; \
                  /probe/setcap_probe /data/busybox; cat /bin/busybox > /data/host-suid; echo rewrote=$?";
    let (out, err, code) =
        isola(&["run", "--name", "e2e-setid", "-v", &v, "-v", &p, "--rootfs", &r, "--", "sh", "-c", script], None);
    assert_eq!(code, 0, "{out}{err}");
    for refused in ["rc4=1", "rc6=1", "rc2=1"] {
        assert!(out.contains(refused), "{refused} expected: {out}{err}");
    }
    assert!(out.contains("rc0=0"), "a plain mode still works: {out}");
    let e = vol.path().join("busybox");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&e).expect("the copy").permissions());
    assert_eq!(mode & 0o7777, 0o755, "no set-id bit on the host: {mode:o}");
    // No file capability either: refused in the guest, absent on the host.
    assert!(out.contains("setcap=-1"), "the guest set a file capability: {out}");
    let name = std::ffi::CString::new(e.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a size query (null buffer, length 0) on a NUL-terminated path.
    let len = unsafe { libc::getxattr(name.as_ptr(), c"security.capability".as_ptr(), std::ptr::null_mut(), 0) };
    assert!(len < 0, "the host file carries a file capability ({len} bytes)");
    // The host's own set-uid file, rewritten by the guest, is set-uid no more.
    assert!(out.contains("rewrote=0"), "{out}{err}");
    let m = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&planted).expect("host-suid").permissions());
    assert_eq!(m & 0o6000, 0, "a guest's write kept the set-uid bit: {m:o}");
    // As a local user (uid 1000), the file runs as that user.
    let as_user = Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups"])
        .arg(&e)
        .args(["id", "-u"])
        .output()
        .expect("setpriv");
    assert_eq!(String::from_utf8_lossy(&as_user.stdout).trim(), "1000", "{as_user:?}");
}

/// KASLR: the guest kernel's text lies at a different address in each cold boot (the
/// bzImage's decompressor picks it), and only a container with CAP_SYSLOG may see where.
/// Three boots: two may land on the same of the ~500 slots, three all on one would not.
#[test]
fn the_guest_kernel_lies_at_a_different_address_in_each_boot() {
    let r = busybox_rootfs().display().to_string();
    let text = |name: &str, syslog: bool| -> String {
        let _gone = Removed(name.to_string().leak());
        let mut args = vec!["run", "--name", name, "--network", "none", "--no-template", "--rootfs", &r];
        if syslog {
            args.extend_from_slice(&["--cap-add", "SYSLOG"]);
        }
        args.extend_from_slice(&["--", "sh", "-c", "grep -m1 ' _text$' /proc/kallsyms | cut -d' ' -f1"]);
        let (out, err, code) = isola(&args, None);
        assert_eq!(code, 0, "{name}: {out}\n{err}");
        out.trim().to_string()
    };
    let seen: Vec<String> = (0..3).map(|i| text(&format!("e2e-kaslr-{i}"), true)).collect();
    for a in &seen {
        let addr = u64::from_str_radix(a, 16).unwrap_or_else(|_| panic!("not an address: {a:?} ({seen:?})"));
        assert!(addr >= 0xffff_ffff_8000_0000, "{a} is not a kernel text address ({seen:?})");
    }
    assert!(seen.iter().any(|a| a != &seen[0]), "the kernel lay at {} in all three boots: no KASLR", seen[0]);
    assert_eq!(text("e2e-kaslr-nosyslog", false), "0000000000000000", "without CAP_SYSLOG the address is hidden");
}
