//! Egress from isola's bridge, tried from a guest: the internet (here a test namespace
//! acting as the uplink) is reachable through NAT; a private-range address behind the
//! same uplink is not, unless the sandbox is started with `--network-allow`.

use isola_e2e::{busybox_rootfs, isola};
use std::net::Ipv4Addr;

struct Removed(&'static str);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = isola(&["rm", "-f", self.0], None);
    }
}

#[test]
fn private_ranges_are_closed_by_default_and_opened_by_network_allow() {
    let _a = Removed("e2e-egress-default");
    let _b = Removed("e2e-egress-allowed");
    let mut outside = isola_e2e::outside::Outside::new(4);
    let private = Ipv4Addr::new(10, 213, 4, 5);
    outside.add_address(private);
    let world = outside.serve(outside.addr, "from-outside\n");
    let lan = outside.serve(private, "from-private\n");
    let r = busybox_rootfs().display().to_string();
    let script = format!(
        "try() {{ echo \"$1: $(timeout 6 sh -c \"sleep 1 | nc -w 3 $2 $3\" 2>/dev/null | head -1)\"; }}
         try outside {} {}; try private {private} {}",
        outside.addr, world.port, lan.port
    );
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec!["run", "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--rootfs", &r, "--", "sh", "-c", &script]);
        let (out, err, code) = isola(&args, None);
        assert_eq!(code, 0, "{out}{err}");
        out
    };
    let got = |out: &str, k: &str| {
        out.lines().find_map(|l| l.strip_prefix(&format!("{k}: "))).map(str::to_string).unwrap_or_default()
    };
    let out = run("e2e-egress-default", &[]);
    assert_eq!(got(&out, "outside"), "from-outside", "the internet is reachable:\n{out}");
    assert_eq!(got(&out, "private"), "", "a private range is closed by default:\n{out}");
    assert_eq!(lan.accepted(), 0, "nothing reached the private listener");
    let out = run("e2e-egress-allowed", &["--network-allow", "10.213.4.0/24"]);
    assert_eq!(got(&out, "private"), "from-private", "--network-allow opens it:\n{out}");
    assert_eq!(got(&out, "outside"), "from-outside", "{out}");
    let (_, err, code) = isola(&["run", "--network-allow", "10.0.0.0/99", "--rootfs", &r, "--", "true"], None);
    assert_ne!(code, 0);
    assert!(err.contains("10.0.0.0/99"), "the bad network is named: {err}");
}
