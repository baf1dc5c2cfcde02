//! A sandbox in a pod's network namespace (as CNI leaves it for the shim): the guest
//! takes the pod's interface over, and may send only as the pod — its address and its
//! MAC — however hostile its kernel, and never to what the host denies pods.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use isola_e2e::busybox_rootfs;
use isola_sandbox::sandbox::{Sandbox, SandboxOptions};
use isola_sandbox::seccomp::Seccomp;
use isola_sandbox::spec::{self, ContainerOptions};
use isola_sandbox::{Rootfs, StdioStream};

const NS: &str = "isola-e2e-pod";
const HOST_END: &str = "ie2epodh";
/// A second address of the host's on the pod network, which the host's configuration
/// denies pods.
const DENIED: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 5);

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A pod network as a CNI plugin leaves it: a namespace whose `eth0` (one end of a
/// veth pair) holds the pod's address, with a default route via the host's end.
struct PodNetns;

impl PodNetns {
    fn new(host: Ipv4Addr, pod: Ipv4Addr) -> Self {
        Self::remove();
        ip(&["netns", "add", NS]);
        ip(&["link", "add", HOST_END, "type", "veth", "peer", "name", "eth0", "netns", NS]);
        ip(&["addr", "add", &format!("{host}/24"), "dev", HOST_END]);
        ip(&["addr", "add", &format!("{DENIED}/32"), "dev", HOST_END]);
        ip(&["link", "set", HOST_END, "up"]);
        ip(&["-n", NS, "addr", "add", &format!("{pod}/24"), "dev", "eth0"]);
        ip(&["-n", NS, "link", "set", "eth0", "up"]);
        ip(&["-n", NS, "link", "set", "lo", "up"]);
        ip(&["-n", NS, "route", "add", "default", "via", &host.to_string()]);
        PodNetns
    }

    fn remove() {
        let _ = std::process::Command::new("ip").args(["netns", "del", NS]).output();
        let _ = std::process::Command::new("ip").args(["link", "del", HOST_END]).output();
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        Self::remove();
    }
}

/// A TCP server on the host that greets and counts whoever connects.
fn serve(at: Ipv4Addr) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind((at, 0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = c.write_all(b"from-host\n");
        }
    });
    (port, accepted)
}

#[test]
fn a_hostile_guest_in_a_pod_sends_only_as_the_pod() {
    let (host, pod) = (Ipv4Addr::new(10, 211, 0, 1), Ipv4Addr::new(10, 211, 0, 2));
    let _ns = PodNetns::new(host, pod);
    let (port, accepted) = serve(host);
    let (denied_port, denied_accepted) = serve(DENIED);
    let opts = SandboxOptions {
        netns: Some(format!("/run/netns/{NS}").into()),
        network_deny: vec![format!("{DENIED}/32").parse().expect("cidr")],
        ..isola_e2e::sandbox_options("e2e-pod-net")
    };
    let sb = Sandbox::start(&opts).expect("sandbox in the pod's namespace");
    let script = format!(
        "try() {{ echo \"$1: $(timeout 6 sh -c \"sleep 1 | nc -w 3 ${{2:-{host}}} ${{3:-{port}}}\" 2>/dev/null | head -1)\"; }}
         me=$(ip -4 addr show eth0 | grep -o 'inet [0-9./]*' | cut -d' ' -f2); mac=$(cat /sys/class/net/eth0/address)
         echo \"me: $me\"; try pod; try denied {DENIED} {denied_port}
         ip addr flush dev eth0; ip addr add 10.211.0.9/24 dev eth0; ip route add default via {host}; ip neigh flush dev eth0
         try spoofed-ip
         ip addr flush dev eth0; ip link set eth0 down; ip link set eth0 address 02:00:00:00:00:99; ip link set eth0 up
         ip addr add $me dev eth0; ip route add default via {host}; ip neigh flush dev eth0
         echo \"mac: $(cat /sys/class/net/eth0/address)\"; try spoofed-mac
         ip addr flush dev eth0; ip link set eth0 down; ip link set eth0 address $mac; ip link set eth0 up
         ip addr add $me dev eth0; ip route add default via {host}; ip neigh flush dev eth0
         try restored"
    );
    // Root with CAP_NET_ADMIN and CAP_NET_RAW and no seccomp filter: as free as a
    // guest whose kernel is the attacker's.
    let spec = spec::spec(&ContainerOptions {
        args: vec!["sh".into(), "-c".into(), script],
        cap_add: vec!["NET_ADMIN".into(), "NET_RAW".into()],
        seccomp: Seccomp::Unconfined,
        ..Default::default()
    })
    .expect("spec");
    sb.create_container("hostile", spec, Rootfs::Upload(&busybox_rootfs()), &[]).expect("create");
    let c = sb.container("hostile");
    let mut stdout = c.init().stream(StdioStream::Stdout).expect("stdout");
    c.start().expect("start");
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("read");
    let status = c.wait().expect("wait");
    assert_eq!(status.code, 0, "{out}");
    let got =
        |k: &str| out.lines().find_map(|l| l.strip_prefix(&format!("{k}: "))).map(str::to_string).unwrap_or_default();
    assert_eq!(got("me"), format!("{pod}/24"), "the guest holds the pod's address:\n{out}");
    assert_eq!(got("pod"), "from-host", "as the pod, the guest reaches the host:\n{out}");
    assert_eq!(got("mac"), "02:00:00:00:00:99", "the guest did take another MAC:\n{out}");
    assert_eq!(got("restored"), "from-host", "as the pod again, it works:\n{out}");
    for k in ["spoofed-ip", "spoofed-mac", "denied"] {
        assert_eq!(got(k), "", "{k} must not leave the pod:\n{out}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "only the two connections as the pod arrived:\n{out}");
    assert_eq!(denied_accepted.load(Ordering::SeqCst), 0, "the denied network was reached:\n{out}");
    drop(sb);
    let qdiscs =
        std::process::Command::new("ip").args(["netns", "exec", NS, "tc", "qdisc", "show", "dev", "eth0"]).output();
    let qdiscs = String::from_utf8_lossy(&qdiscs.expect("tc").stdout).into_owned();
    assert!(!qdiscs.contains("ingress"), "the redirect outlived the sandbox: {qdiscs}");
}
