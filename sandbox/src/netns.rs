//! A pod's network namespace, set up by CNI before the shim runs: the VMM is started
//! inside it, creates its tap there, and tc redirects tie the tap to the CNI interface
//! in both directions (as Kata does), so the guest owns the pod's address, MAC, routes
//! and MTU while the host keeps nothing of it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cmd::CmdError;

#[derive(Debug, thiserror::Error)]
pub enum PodNetError {
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error("inspecting network namespace {netns}: {why}")]
    Bad { netns: String, why: String },
    #[error("tap {0} did not appear (the VMM did not create it)")]
    NoTap(String),
    #[error(
        "network namespace {0} already has a microVM's tap ({TAP}): containers that share a pod's \
         namespace need one VM for the pod (containerd-shim-isola-v2)"
    )]
    Taken(String),
}

/// A CNI link that reports no MTU gets Ethernet's.
const DEFAULT_MTU: u32 = 1500;

/// The tap's name inside the pod's namespace (the namespace is the pod's own).
pub const TAP: &str = "isolatap0";

/// The CNI interface the guest takes over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNet {
    pub netns: PathBuf,
    pub iface: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u32,
    pub mac: String,
    /// Networks the guest may not reach through the CNI interface (the host's
    /// `pod_network_deny`).
    #[serde(default)]
    pub deny: Vec<crate::netfilter::Cidr>,
}

/// `ip -j addr` and `ip -j route` output: only the fields we read.
#[derive(Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    address: String,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Deserialize)]
struct AddrInfo {
    family: String,
    local: String,
    prefixlen: u8,
}

#[derive(Deserialize)]
struct Route {
    dst: String,
    #[serde(default)]
    gateway: Option<String>,
}

fn in_netns(netns: &Path, args: &[&str]) -> Result<String, PodNetError> {
    let enter = format!("--net={}", netns.display());
    let mut all = vec![enter.as_str()];
    all.extend_from_slice(args);
    Ok(crate::cmd::run("nsenter", &all)?)
}

fn bad(netns: &Path, why: String) -> PodNetError {
    PodNetError::Bad { netns: netns.display().to_string(), why }
}

/// Reads the first non-loopback interface with an IPv4 address, and the default route.
pub fn inspect(netns: &Path) -> Result<PodNet, PodNetError> {
    let links: Vec<Link> = serde_json::from_str(&in_netns(netns, &["ip", "-j", "addr", "show"])?)
        .map_err(|e| bad(netns, format!("ip -j addr: {e}")))?;
    let routes: Vec<Route> = serde_json::from_str(&in_netns(netns, &["ip", "-j", "-4", "route", "show"])?)
        .map_err(|e| bad(netns, format!("ip -j route: {e}")))?;
    parse(netns, links, routes)
}

fn parse(netns: &Path, links: Vec<Link>, routes: Vec<Route>) -> Result<PodNet, PodNetError> {
    // A second VM would take the same interface over and cut the first one off.
    if links.iter().any(|l| l.ifname == TAP) {
        return Err(PodNetError::Taken(netns.display().to_string()));
    }
    let (link, addr) = links
        .iter()
        .filter(|l| l.ifname != "lo" && l.ifname != TAP)
        .find_map(|l| l.addr_info.iter().find(|a| a.family == "inet").map(|a| (l, a)))
        .ok_or_else(|| bad(netns, "no interface with an IPv4 address (did CNI run?)".into()))?;
    let ip = addr.local.parse().map_err(|_| bad(netns, format!("bad address {:?}", addr.local)))?;
    let gateway = routes
        .iter()
        .find(|r| r.dst == "default")
        .and_then(|r| r.gateway.as_deref())
        .map(|g| g.parse().map_err(|_| bad(netns, format!("bad gateway {g:?}"))))
        .transpose()?;
    Ok(PodNet {
        netns: netns.into(),
        iface: link.ifname.clone(),
        ip,
        prefix: addr.prefixlen,
        gateway,
        mtu: if link.mtu == 0 { DEFAULT_MTU } else { link.mtu },
        mac: link.address.clone(),
        deny: vec![],
    })
}

impl PodNet {
    pub fn guest_config(&self) -> isola_protocol::NetConfig {
        isola_protocol::NetConfig {
            address: format!("{}/{}", self.ip, self.prefix),
            gateway: self.gateway.map(|g| g.to_string()),
            mtu: self.mtu,
            mac: None,
        }
    }

    /// Once the VMM has created its tap in the namespace: everything arriving on the CNI
    /// interface leaves through the tap (to the guest) and the other way round.
    pub fn redirect(&self, timeout: Duration) -> Result<(), PodNetError> {
        let until = Instant::now() + timeout;
        while in_netns(&self.netns, &["ip", "link", "show", "dev", TAP]).is_err() {
            if Instant::now() > until {
                return Err(PodNetError::NoTap(TAP.into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        in_netns(&self.netns, &["ip", "link", "set", "dev", TAP, "mtu", &self.mtu.to_string(), "up"])?;
        // What the redirect does not take stays in the namespace, whose stack must not
        // route it on: no forwarding and no IPv6 from the tap.
        in_netns(&self.netns, &["sysctl", "-q", "-w", &format!("net.ipv4.conf.{TAP}.forwarding=0")])?;
        // (A host without IPv6 has no such key: nothing to turn off then.)
        let _ = in_netns(&self.netns, &["sysctl", "-q", "-w", &format!("net.ipv6.conf.{TAP}.disable_ipv6=1")]);
        for dev in [self.iface.as_str(), TAP] {
            in_netns(&self.netns, &["tc", "qdisc", "add", "dev", dev, "ingress"])?;
        }
        // Out, first: what the host's configuration denies pods matches a filter with no
        // action, which ends the classification without the redirect.
        for net in &self.deny {
            let dst = ["match", "ip", "dst", &net.to_string()].map(String::from);
            self.add_filter(TAP, "ip", "1", &dst, &["flowid", "ffff:1"])?;
        }
        // In: everything for the pod reaches the guest.
        let to_tap = ["match", "u8", "0", "0"].map(String::from).to_vec();
        self.redirect_matching(&self.iface, "all", "1", &to_tap, TAP)?;
        // Out: only what the guest may send as the pod (anti-spoofing, as the bridge's
        // chain does for a sandbox there): IPv4 from the pod's address and MAC, ARP
        // whose sender is the pod's address and MAC. Anything else is not redirected,
        // so it never leaves the namespace.
        for (proto, prio, matches) in spoof_free(self.ip, &self.mac)? {
            self.redirect_matching(TAP, proto, prio, &matches, &self.iface)?;
        }
        Ok(())
    }

    fn redirect_matching(
        &self,
        from: &str,
        proto: &str,
        prio: &str,
        matches: &[String],
        to: &str,
    ) -> Result<(), PodNetError> {
        self.add_filter(from, proto, prio, matches, &["action", "mirred", "egress", "redirect", "dev", to])
    }

    /// A u32 filter on `dev`'s ingress: `matches`, then what a match does (`then`).
    fn add_filter(
        &self,
        dev: &str,
        proto: &str,
        prio: &str,
        matches: &[String],
        then: &[&str],
    ) -> Result<(), PodNetError> {
        let mut args: Vec<&str> =
            vec!["tc", "filter", "add", "dev", dev, "parent", "ffff:", "protocol", proto, "prio", prio, "u32"];
        args.extend(matches.iter().map(String::as_str));
        args.extend_from_slice(then);
        in_netns(&self.netns, &args)?;
        Ok(())
    }

    /// Takes the redirect off the CNI interface (the tap went with the VMM), so the
    /// namespace is as CNI left it. The namespace may already be gone: not an error.
    pub fn undo(&self) {
        if self.netns.exists() {
            let _ = in_netns(&self.netns, &["tc", "qdisc", "del", "dev", &self.iface, "ingress"]);
        }
    }
}

/// One tc filter: protocol, priority, u32 matches.
type Filter = (&'static str, &'static str, Vec<String>);

/// The tc u32 matches of what a guest at `ip` with `mac` may send: (protocol, priority,
/// matches) for IPv4 and for ARP. u32 compares aligned words, so the ARP sender's MAC
/// (bytes 8–13) and address (14–17) are split into aligned pieces; `ether src` matches
/// the frame's own source MAC.
fn spoof_free(ip: Ipv4Addr, mac: &str) -> Result<Vec<Filter>, PodNetError> {
    let bytes: Vec<u8> = mac.split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
    let [m0, m1, m2, m3, m4, m5] = bytes[..] else {
        return Err(PodNetError::Bad { netns: String::new(), why: format!("the pod's MAC {mac:?} is not a MAC") });
    };
    let o = ip.octets();
    let words = |parts: &[(&str, String, &str, u32)]| -> Vec<String> {
        parts
            .iter()
            .flat_map(|(kind, value, mask, at)| {
                ["match".into(), kind.to_string(), value.clone(), mask.to_string(), "at".into(), at.to_string()]
            })
            .collect()
    };
    let mut ipv4 = vec!["match".into(), "ip".into(), "src".into(), format!("{ip}/32")];
    ipv4.extend(["match".into(), "ether".into(), "src".into(), mac.to_string()]);
    let mut arp = words(&[
        ("u32", format!("0x{m0:02x}{m1:02x}{m2:02x}{m3:02x}"), "0xffffffff", 8),
        ("u16", format!("0x{m4:02x}{m5:02x}"), "0xffff", 12),
        ("u16", format!("0x{:02x}{:02x}", o[0], o[1]), "0xffff", 14),
        ("u16", format!("0x{:02x}{:02x}", o[2], o[3]), "0xffff", 16),
    ]);
    arp.extend(["match".into(), "ether".into(), "src".into(), mac.to_string()]);
    Ok(vec![("ip", "2", ipv4), ("arp", "3", arp)])
}

/// Runs the VMM inside `netns` (its tap is created there).
pub fn enter_before_exec(cmd: &mut Command, netns: &Path) -> Result<(), PodNetError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let f = std::fs::File::open(netns).map_err(|e| bad(netns, e.to_string()))?;
    // SAFETY: setns(2) is async-signal-safe; the fd stays open (moved into the closure) until exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(json: &str) -> Vec<Link> {
        serde_json::from_str(json).expect("links")
    }

    #[test]
    fn only_the_pods_own_address_and_mac_may_leave() {
        let rules = spoof_free(Ipv4Addr::new(10, 22, 0, 7), "aa:bb:cc:dd:ee:0f").expect("rules");
        let joined: Vec<(&str, String)> = rules.iter().map(|(p, _, m)| (*p, m.join(" "))).collect();
        assert_eq!(joined[0], ("ip", "match ip src 10.22.0.7/32 match ether src aa:bb:cc:dd:ee:0f".into()));
        assert_eq!(
            joined[1],
            (
                "arp",
                "match u32 0xaabbccdd 0xffffffff at 8 match u16 0xee0f 0xffff at 12 match u16 0x0a16 0xffff at 14 \
                 match u16 0x0007 0xffff at 16 match ether src aa:bb:cc:dd:ee:0f"
                    .into()
            )
        );
        assert!(spoof_free(Ipv4Addr::LOCALHOST, "aa:bb").is_err(), "a short MAC is refused");
    }

    #[test]
    fn the_cni_interface_and_default_route_are_found() {
        let l = links(
            r#"[{"ifname":"lo","mtu":65536,"address":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
                {"ifname":"eth0","mtu":1450,"address":"aa:bb:cc:dd:ee:ff","addr_info":[{"family":"inet6","local":"fe80::1","prefixlen":64},{"family":"inet","local":"10.22.0.7","prefixlen":24}]}]"#,
        );
        let r: Vec<Route> =
            serde_json::from_str(r#"[{"dst":"default","gateway":"10.22.0.1"},{"dst":"10.22.0.0/24"}]"#).expect("r");
        let p = parse(Path::new("/x"), l, r).expect("parse");
        assert_eq!((p.iface.as_str(), p.ip, p.prefix, p.mtu), ("eth0", Ipv4Addr::new(10, 22, 0, 7), 24, 1450));
        assert_eq!(p.gateway, Some(Ipv4Addr::new(10, 22, 0, 1)));
        assert_eq!(p.mac, "aa:bb:cc:dd:ee:ff");
        let c = p.guest_config();
        assert_eq!((c.address.as_str(), c.gateway.as_deref(), c.mtu), ("10.22.0.7/24", Some("10.22.0.1"), 1450));
    }

    #[test]
    fn a_namespace_another_vm_holds_is_refused() {
        let l = links(
            r#"[{"ifname":"eth0","addr_info":[{"family":"inet","local":"10.22.0.7","prefixlen":24}]},
                {"ifname":"isolatap0","addr_info":[]}]"#,
        );
        let e = parse(Path::new("/var/run/netns/p"), l, vec![]).expect_err("taken");
        assert!(matches!(e, PodNetError::Taken(_)), "{e}");
        assert!(e.to_string().contains("one VM for the pod"), "{e}");
    }

    #[test]
    fn a_namespace_without_an_address_is_a_clear_error() {
        let l = links(r#"[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]}]"#);
        let e = parse(Path::new("/var/run/netns/x"), l, vec![]).expect_err("no address");
        assert!(e.to_string().contains("no interface with an IPv4 address"), "{e}");
        assert!(e.to_string().contains("/var/run/netns/x"), "{e}");
    }
}
