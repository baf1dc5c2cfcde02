//! Sandbox networking on the host: the `isola0` bridge (10.88.0.1/16) with NAT to the
//! outside, one address per sandbox (isolated from the others and from the host's own
//! services: [`crate::netfilter`]), and one tap per sandbox that QEMU itself creates
//! (non-persistent), so it disappears with the VMM however the VMM ends.
//!
//! For the containerd shim the same tap can instead be created inside a pod's network
//! namespace and tied to the CNI interface with tc redirects (as Kata does); only
//! `attach` changes.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use crate::netfilter::BRIDGE;
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
pub const PREFIX: u8 = 16;
pub const MTU: u32 = 1500;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Cmd(#[from] crate::cmd::CmdError),
    #[error(transparent)]
    Filter(#[from] crate::netfilter::FilterError),
    #[error("no free address left in 10.88.0.0/16")]
    Exhausted,
    #[error("tap {0} did not appear (the VMM did not create it)")]
    NoTap(String),
    #[error("network lock {path}: {source}")]
    Lock { path: String, source: std::io::Error },
}

/// What a sandbox's network is, recorded in its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    pub ip: Ipv4Addr,
    pub tap: String,
    pub mac: String,
    /// Set when the sandbox lives in a pod's (CNI) network namespace instead of on the bridge.
    #[serde(default)]
    pub pod: Option<crate::netns::PodNet>,
    /// Private or LAN networks it may reach beyond the default egress (bridge only).
    #[serde(default)]
    pub allow: Vec<crate::netfilter::Cidr>,
    /// The DNS servers it is given, which it reaches on port 53 wherever they are.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
}

impl NetState {
    /// A sandbox on the bridge at `ip`, which the allocation lock made its own: the
    /// tap (and so its filter chain) is named from that address, never from the
    /// user-chosen name, whose short hash two names can share (then one sandbox's
    /// failed start removed the other's anti-spoofing chain).
    pub fn for_sandbox(ip: Ipv4Addr, allow: Vec<crate::netfilter::Cidr>) -> Self {
        let o = ip.octets();
        let mac = format!("02:49:53:{:02x}:{:02x}:{:02x}", o[1], o[2], o[3]);
        let dns = host_dns().iter().filter_map(|s| s.parse().ok()).collect();
        NetState { ip, tap: tap_for(ip), mac, pod: None, allow, dns }
    }

    /// The guest takes over the pod's CNI interface: its address and MAC.
    pub fn for_pod(pod: crate::netns::PodNet) -> Self {
        NetState {
            ip: pod.ip,
            tap: crate::netns::TAP.into(),
            mac: pod.mac.clone(),
            pod: Some(pod),
            allow: vec![],
            dns: vec![],
        }
    }

    /// What the isolation rules pin for this sandbox.
    pub fn port(&self) -> crate::netfilter::Port<'_> {
        crate::netfilter::Port { tap: &self.tap, mac: &self.mac, ip: self.ip, allow: &self.allow, dns: &self.dns }
    }

    pub fn guest_config(&self) -> isola_protocol::NetConfig {
        let mut c = match &self.pod {
            Some(p) => p.guest_config(),
            None => isola_protocol::NetConfig {
                address: format!("{}/{PREFIX}", self.ip),
                gateway: Some(GATEWAY.to_string()),
                mtu: MTU,
                mac: None,
            },
        };
        c.mac = Some(self.mac.clone());
        c
    }
}

/// The tap of the sandbox at `ip` (`isola` and the address in hex: 13 bytes, within
/// IFNAMSIZ).
pub fn tap_for(ip: Ipv4Addr) -> String {
    format!("isola{:08x}", u32::from(ip))
}

/// The bridge, its address, NAT and the isolation rules ([`crate::netfilter`]);
/// idempotent. Call with the lock ([`lock`]) held.
pub fn ensure_bridge(_lock: &AllocLock) -> Result<(), NetError> {
    if !Path::new("/sys/class/net").join(BRIDGE).exists() {
        crate::cmd::run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        crate::cmd::run("ip", &["addr", "add", &format!("{GATEWAY}/{PREFIX}"), "dev", BRIDGE])?;
    }
    crate::cmd::run("ip", &["link", "set", BRIDGE, "up"])?;
    crate::netfilter::ensure_host_rules()?;
    let masquerade = crate::netfilter::masquerade_rule();
    crate::netfilter::ensure_rule("nat", &masquerade[1..], crate::netfilter::Place::Last).map_err(Into::into)
}

/// An exclusive lock over address allocation (held until the sandbox's state is saved).
pub type AllocLock = nix::fcntl::Flock<std::fs::File>;

pub fn lock(state_root: &Path) -> Result<AllocLock, NetError> {
    let path = state_root.join(".net.lock");
    let err = |source| NetError::Lock { path: path.display().to_string(), source };
    std::fs::create_dir_all(state_root).map_err(err)?;
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(err)?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| err(e.into()))
}

/// The lowest address no live sandbox uses (call with the lock held).
pub fn allocate(in_use: &[Ipv4Addr]) -> Result<Ipv4Addr, NetError> {
    (2u32..0xffff)
        .map(|n| Ipv4Addr::from(u32::from(GATEWAY) & 0xffff_0000 | n))
        .find(|ip| !in_use.contains(ip))
        .ok_or(NetError::Exhausted)
}

/// Puts the VMM's tap on the bridge once the VMM has created it: an isolated port
/// that passes only the sandbox's own MAC and address, then up.
pub fn attach(n: &NetState, timeout: Duration) -> Result<(), NetError> {
    let until = Instant::now() + timeout;
    while !Path::new("/sys/class/net").join(&n.tap).exists() {
        if Instant::now() > until {
            return Err(NetError::NoTap(n.tap.clone()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    crate::netfilter::isolate_port(n.port())?;
    crate::cmd::run("ip", &["link", "set", &n.tap, "up"]).map(drop).map_err(Into::into)
}

/// DNS servers the guest can reach: the host's, minus loopback stubs.
pub fn host_dns() -> Vec<String> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| s.parse::<Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_the_gateway_and_those_in_use() {
        assert_eq!(allocate(&[]).expect("ip"), Ipv4Addr::new(10, 88, 0, 2));
        let used = [Ipv4Addr::new(10, 88, 0, 2), Ipv4Addr::new(10, 88, 0, 3)];
        assert_eq!(allocate(&used).expect("ip"), Ipv4Addr::new(10, 88, 0, 4));
    }

    #[test]
    fn tap_names_fit_ifnamsiz_and_macs_follow_the_address() {
        let n = NetState::for_sandbox(Ipv4Addr::new(10, 88, 1, 7), vec![]);
        assert!(n.tap.len() <= 15, "{}", n.tap);
        assert_eq!(n.tap, "isola0a580107");
        assert_eq!(n.mac, "02:49:53:58:01:07");
        assert_eq!(n.guest_config().address, "10.88.1.7/16");
    }

    /// Two names whose short hashes collide (found by an audit) get their own taps:
    /// the tap follows the address, which is unique among live sandboxes.
    #[test]
    fn names_that_share_a_hash_do_not_share_a_tap() {
        assert_eq!(crate::names::name_hash("audtap-ltzla"), crate::names::name_hash("audtap-23apa"));
        let a = allocate(&[]).expect("ip");
        let b = allocate(&[a]).expect("ip");
        assert_ne!(NetState::for_sandbox(a, vec![]).tap, NetState::for_sandbox(b, vec![]).tap);
    }
}
