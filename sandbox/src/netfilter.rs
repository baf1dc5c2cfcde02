//! Isolation of sandboxes on the `isola0` bridge. A guest kernel is hostile, so:
//! - each tap is an isolated bridge port: sandboxes never reach each other at layer 2,
//!   and routing between them through the gateway is dropped;
//! - each tap's ingress (an nftables `netdev` chain, before the bridge sees the frame)
//!   passes only ARP and IPv4 from the sandbox's own MAC and address: no spoofing;
//! - input from the bridge to the host is dropped except replies to connections the
//!   host opened; link-local (169.254.0.0/16, cloud metadata) is never forwarded;
//! - forwarding is enabled for the bridge and the uplinks, not host-wide;
//! - egress: a sandbox reaches the internet through NAT but not private ranges (RFC
//!   1918, CGNAT) nor the subnets of the host's uplinks (its LAN), except the DNS
//!   servers it is given (port 53) and what the host's `network_allow` and the
//!   sandbox's own `--network-allow` open. These rules sit in the tap's own chain, so
//!   they go with the sandbox and never touch another's.
//!
//! The per-tap chain is keyed by the tap's name and removed by the sandbox's cleanup,
//! however the sandbox ended; the host-wide rules are shared, like the bridge.

use std::path::Path;

use std::net::Ipv4Addr;

use crate::cmd::{run, run_with_input, CmdError};

/// The bridge the rules guard (the sandboxes' side; [`crate::net`] makes it).
pub const BRIDGE: &str = "isola0";
/// Its subnet, NATed to the outside.
pub const SUBNET: &str = "10.88.0.0/16";

/// One sandbox's port: its tap, the only MAC and address it may send from, and where
/// beyond the default egress it may go.
#[derive(Clone, Copy, Debug)]
pub struct Port<'a> {
    pub tap: &'a str,
    pub mac: &'a str,
    pub ip: Ipv4Addr,
    /// Private or LAN ranges opened to it (host default and its own).
    pub allow: &'a [Cidr],
    /// The DNS servers it is given: reachable on port 53 wherever they are.
    pub dns: &'a [Ipv4Addr],
}

/// Destinations a sandbox on the bridge does not reach unless allowed: RFC 1918 and
/// CGNAT (RFC 6598); link-local is dropped host-wide, the bridge's own subnet by the
/// isolated ports and the host's input rules.
pub const PRIVATE_RANGES: [&str; 4] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"];

/// An IPv4 network, `a.b.c.d/n` (a bare address is /32), host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IPv4 network (a.b.c.d/n)");
        let (a, p) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Ok(Cidr { addr: Ipv4Addr::from(u32::from(addr) & mask), prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// nftables table (family `netdev`) holding one ingress chain per tap.
pub const TABLE: &str = "isola";
const INPUT_CHAIN: &str = "ISOLA-INPUT";
const FORWARD_CHAIN: &str = "ISOLA-FORWARD";

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("network isolation rules: {0} (install iptables and nftables)")]
    Cmd(#[from] CmdError),
    #[error("enabling forwarding on {dev}: {source}")]
    Forward { dev: String, source: std::io::Error },
}

/// The host-wide rules, as one `iptables-restore --noflush` transaction: declaring
/// the chains replaces their contents atomically, so concurrent callers never see
/// them half-filled.
fn host_rules() -> String {
    let b = BRIDGE;
    format!(
        "*filter\n:{INPUT_CHAIN} - [0:0]\n:{FORWARD_CHAIN} - [0:0]\n\
         -A {INPUT_CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
         -A {INPUT_CHAIN} -j DROP\n\
         -A {FORWARD_CHAIN} -i {b} -o {b} -j DROP\n\
         -A {FORWARD_CHAIN} -i {b} -d 169.254.0.0/16 -j DROP\n\
         -A {FORWARD_CHAIN} -i {b} -j ACCEPT\n\
         -A {FORWARD_CHAIN} -o {b} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
         -A {FORWARD_CHAIN} -o {b} -j DROP\n\
         COMMIT\n"
    )
}

/// The jumps into our chains, first in the built-in chains (checked, then inserted).
fn jumps() -> [[&'static str; 5]; 3] {
    [
        ["INPUT", "-i", BRIDGE, "-j", INPUT_CHAIN],
        ["FORWARD", "-i", BRIDGE, "-j", FORWARD_CHAIN],
        ["FORWARD", "-o", BRIDGE, "-j", FORWARD_CHAIN],
    ]
}

/// Where [`ensure_rule`] adds a missing rule to its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    First,
    Last,
}

/// Adds `rule` (chain first, then its matches) to `table` unless it is there already
/// (`iptables -C`); not atomic by itself, so callers hold the network lock.
pub fn ensure_rule(table: &str, rule: &[&str], place: Place) -> Result<(), CmdError> {
    let mut check = vec!["-t", table, "-C"];
    check.extend_from_slice(rule);
    if run("iptables", &check).is_ok() {
        return Ok(());
    }
    let mut add = vec!["-t", table];
    match place {
        Place::First => add.extend_from_slice(&["-I", rule[0], "1"]),
        Place::Last => add.extend_from_slice(&["-A", rule[0]]),
    }
    add.extend_from_slice(&rule[1..]);
    run("iptables", &add).map(drop)
}

/// Host-wide rules and forwarding; idempotent. Call with the network lock held (the
/// check-then-insert of the jumps is not atomic by itself).
pub fn ensure_host_rules() -> Result<(), FilterError> {
    run_with_input("iptables-restore", &["--noflush"], &host_rules())?;
    for j in jumps() {
        ensure_rule("filter", &j, Place::First)?;
    }
    for dev in std::iter::once(BRIDGE.to_string()).chain(uplinks()) {
        let path = Path::new("/proc/sys/net/ipv4/conf").join(&dev).join("forwarding");
        std::fs::write(&path, "1").map_err(|source| FilterError::Forward { dev, source })?;
    }
    Ok(())
}

/// An `iptables-save` line of the host-wide rules (ours chains, their jumps, the NAT).
pub fn is_shared_rule(line: &str) -> bool {
    line.contains(INPUT_CHAIN)
        || line.contains(FORWARD_CHAIN)
        || line.contains("-s 10.88.0.0/16 ! -o isola0 -j MASQUERADE")
}

/// The NAT of the bridge's subnet, as `iptables-save` prints it (after `-t nat`).
pub fn masquerade_rule() -> [&'static str; 9] {
    ["-A", "POSTROUTING", "-s", SUBNET, "!", "-o", BRIDGE, "-j", "MASQUERADE"]
}

/// Interfaces of the host's default routes: NATed traffic leaves, and its replies
/// arrive (and are forwarded), there.
fn uplinks() -> Vec<String> {
    let out = run("ip", &["-4", "route", "show", "default"]).unwrap_or_default();
    parse_uplinks(&out)
}

fn parse_uplinks(routes: &str) -> Vec<String> {
    let mut devs: Vec<String> = Vec::new();
    for l in routes.lines() {
        let mut w = l.split_whitespace().skip_while(|w| *w != "dev");
        let Some(d) = w.next().and(w.next()) else { continue };
        if d != BRIDGE && !d.contains('/') && !d.starts_with('.') && !devs.iter().any(|x| x == d) {
            devs.push(d.to_string());
        }
    }
    devs
}

/// The tap's ingress chain: only its own MAC with its own address, ARP or IPv4; of
/// IPv4, what is allowed or its DNS first, then nothing to a private range or the
/// host's LAN (`lan`), then the rest (the internet, through NAT).
fn port_rules(p: Port, lan: &[Cidr]) -> String {
    let (t, mac, ip) = (p.tap, p.mac, p.ip);
    let from = format!("add rule netdev {TABLE} {t} ether saddr {mac} ip saddr {ip}");
    let mut r = format!(
        "table netdev {TABLE} {{}}\n\
         add chain netdev {TABLE} {t} {{ type filter hook ingress device \"{t}\" priority 0; policy drop; }}\n\
         flush chain netdev {TABLE} {t}\n\
         add rule netdev {TABLE} {t} ether saddr {mac} arp saddr ether {mac} arp saddr ip {ip} accept\n"
    );
    let set = |items: Vec<String>| format!("{{ {} }}", items.join(", "));
    if !p.allow.is_empty() {
        r += &format!("{from} ip daddr {} accept\n", set(p.allow.iter().map(Cidr::to_string).collect()));
    }
    if !p.dns.is_empty() {
        let dns = set(p.dns.iter().map(Ipv4Addr::to_string).collect());
        r += &format!("{from} ip daddr {dns} udp dport 53 accept\n{from} ip daddr {dns} tcp dport 53 accept\n");
    }
    let closed: Vec<String> =
        PRIVATE_RANGES.iter().map(|s| s.to_string()).chain(lan.iter().map(Cidr::to_string)).collect();
    // The bridge's own subnet stays: the gateway (replies to the host) and the isolated
    // neighbours are governed by the host's input rules and the isolated ports.
    r += &format!("{from} ip daddr != {SUBNET} ip daddr {} drop\n", set(closed));
    r += &format!("{from} accept\n");
    r
}

/// The subnets the host's uplinks sit on (its LAN), from their link-scope routes.
fn uplink_subnets() -> Vec<Cidr> {
    uplinks()
        .iter()
        .flat_map(|dev| {
            let out = run("ip", &["-4", "route", "show", "dev", dev, "scope", "link"]).unwrap_or_default();
            out.lines().filter_map(|l| l.split_whitespace().next()?.parse::<Cidr>().ok()).collect::<Vec<_>>()
        })
        .filter(|c| c.prefix > 0)
        .collect()
}

/// Pins the tap's MAC and address and makes it an isolated bridge port; call before
/// the port is up. A chain left by an earlier sandbox with this tap name is replaced.
pub fn isolate_port(p: Port) -> Result<(), FilterError> {
    run_with_input("nft", &["-f", "-"], &port_rules(p, &uplink_subnets()))?;
    run("ip", &["link", "set", p.tap, "master", BRIDGE])?;
    run("ip", &["link", "set", "dev", p.tap, "type", "bridge_slave", "isolated", "on"])?;
    Ok(())
}

/// Removes the tap's chain (gone already when the kernel dropped it with the device).
pub fn release_port(tap: &str) {
    if let Err(e) = run("nft", &["delete", "chain", "netdev", TABLE, tap]) {
        log::debug!("no chain for {tap} to remove: {e}");
    }
}

/// The taps that still have a chain (for cleanup and leak checks).
pub fn port_chains() -> Vec<String> {
    let Ok(out) = run("nft", &["list", "table", "netdev", TABLE]) else { return vec![] };
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("chain "))
        .map(|c| c.trim_end_matches('{').trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplinks_are_the_default_routes_devices() {
        let routes = "default via 192.0.2.1 dev eth0 proto dhcp\ndefault via 10.0.0.1 dev wlan0 metric 600\n\
                      default dev isola0\ndefault via 1.1.1.1 dev eth0\n";
        assert_eq!(parse_uplinks(routes), ["eth0", "wlan0"]);
    }

    #[test]
    fn a_port_passes_only_its_own_mac_and_address() {
        let n = Port {
            tap: "isola0000002a",
            mac: "02:49:53:58:00:09",
            ip: Ipv4Addr::new(10, 88, 0, 9),
            allow: &[],
            dns: &[],
        };
        let r = port_rules(n, &[]);
        assert!(r.contains("policy drop"), "{r}");
        assert_eq!(r.matches(" accept").count(), 2, "ARP and IPv4 only: {r}");
        assert!(r.contains(&format!("ether saddr {} ip saddr 10.88.0.9 accept", n.mac)), "{r}");
        assert!(r.contains(&format!("arp saddr ether {} arp saddr ip 10.88.0.9", n.mac)), "{r}");
        assert!(r.contains(&format!("device \"{}\"", n.tap)), "{r}");
    }

    #[test]
    fn private_ranges_and_the_lan_are_closed_but_for_dns_and_what_is_allowed() {
        let allow = ["10.200.0.0/16".parse::<Cidr>().expect("cidr")];
        let dns = [Ipv4Addr::new(10, 255, 255, 53)];
        let p = Port { tap: "t", mac: "m", ip: Ipv4Addr::new(10, 88, 0, 9), allow: &allow, dns: &dns };
        let r = port_rules(p, &["192.0.2.0/24".parse().expect("lan")]);
        let lines: Vec<&str> = r.lines().collect();
        let pos = |s: &str| lines.iter().position(|l| l.contains(s)).unwrap_or_else(|| panic!("{s}: {r}"));
        let drop = pos("} drop");
        assert!(pos("ip daddr { 10.200.0.0/16 } accept") < drop, "{r}");
        assert!(pos("ip daddr { 10.255.255.53 } udp dport 53 accept") < drop, "{r}");
        assert!(pos("tcp dport 53 accept") < drop, "{r}");
        assert!(lines[drop].contains("ip daddr != 10.88.0.0/16"), "{r}");
        for range in PRIVATE_RANGES.iter().chain(&["192.0.2.0/24"]) {
            assert!(lines[drop].contains(range), "{range}: {r}");
        }
        assert!(lines.last().is_some_and(|l| l.ends_with("ip saddr 10.88.0.9 accept")), "the rest goes out: {r}");
    }

    #[test]
    fn networks_parse_with_host_bits_cleared_and_mistakes_named() {
        assert_eq!("10.1.2.3/8".parse::<Cidr>().expect("ok").to_string(), "10.0.0.0/8");
        assert_eq!("10.1.2.3".parse::<Cidr>().expect("ok").to_string(), "10.1.2.3/32");
        assert_eq!("0.0.0.0/0".parse::<Cidr>().expect("ok").to_string(), "0.0.0.0/0");
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "10.0.0.0/", "::1/128"] {
            let e = bad.parse::<Cidr>().expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn the_host_drops_what_the_bridge_sends_it_and_link_local() {
        let r = host_rules();
        let input: Vec<&str> = r.lines().filter(|l| l.starts_with("-A ISOLA-INPUT")).collect();
        assert_eq!(input.last(), Some(&"-A ISOLA-INPUT -j DROP"), "{r}");
        let fwd: Vec<&str> = r.lines().filter(|l| l.starts_with("-A ISOLA-FORWARD")).collect();
        let pos = |s: &str| fwd.iter().position(|l| l.contains(s)).unwrap_or(usize::MAX);
        assert!(pos("FORWARD -o isola0 -j DROP") > pos("ESTABLISHED"), "{r}");
        assert!(pos("169.254.0.0/16 -j DROP") < pos("-i isola0 -j ACCEPT"), "{r}");
        assert!(pos("-i isola0 -o isola0 -j DROP") < pos("-i isola0 -j ACCEPT"), "{r}");
        assert!(fwd.iter().chain(&input).all(|l| is_shared_rule(l)), "{r}");
        assert!(is_shared_rule("-A POSTROUTING -s 10.88.0.0/16 ! -o isola0 -j MASQUERADE"));
        assert!(!is_shared_rule(
            "-A PREROUTING -p tcp --dport 8080 -j DNAT --to-destination 10.88.0.5:80 -m comment --comment isola"
        ));
    }
}
