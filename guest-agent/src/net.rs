//! The guest's network, as the host describes it: loopback up, and eth0 (the one
//! virtio-net interface) with its address, MTU and default route. Plain ioctls on an
//! AF_INET socket: no netlink library needed for this much.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use isola_protocol::NetConfig;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bad network config: {0}")]
    Config(String),
    #[error("{op} on {ifname}: {source}")]
    Ioctl { op: &'static str, ifname: String, source: std::io::Error },
    #[error("no network interface besides lo (is virtio-net configured?)")]
    NoInterface,
}

/// `10.88.0.5/16` → (address, netmask).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), NetError> {
    let bad = || NetError::Config(format!("address {s:?} is not IPv4/prefix"));
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let prefix: u32 = p.parse().map_err(|_| bad())?;
    if prefix > 32 {
        return Err(bad());
    }
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    Ok((addr, Ipv4Addr::from(mask)))
}

/// `02:49:53:00:00:02` → its six bytes; a unicast address only (the host never hands
/// out anything else, and a multicast one would make the interface unusable).
pub fn parse_mac(s: &str) -> Result<[u8; 6], NetError> {
    let bad = || NetError::Config(format!("MAC {s:?} is not six hex bytes of a unicast address"));
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || out[0] & 1 == 1 {
        return Err(bad());
    }
    Ok(out)
}

fn sockaddr(a: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(a).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size and sockaddr is plain data;
    // the kernel reads it back as sockaddr_in because of sin_family.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

struct Ctl(OwnedFd);

impl Ctl {
    fn new() -> std::io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the fd is owned from here on.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and nothing else owns it.
        Ok(Ctl(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ifreq(
        &self,
        ifname: &str,
        op: &'static str,
        req: libc::c_ulong,
        fill: impl FnOnce(&mut libc::ifreq),
    ) -> Result<libc::ifreq, NetError> {
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes().take(libc::IFNAMSIZ - 1)) {
            *d = s as libc::c_char;
        }
        fill(&mut ifr);
        // SAFETY: the request is one of the SIOC[GS]IF* ioctls, which read/write one ifreq
        // that lives on our stack for the whole call.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), req as _, &mut ifr) };
        if rc < 0 {
            return Err(NetError::Ioctl { op, ifname: ifname.into(), source: std::io::Error::last_os_error() });
        }
        Ok(ifr)
    }

    fn up(&self, ifname: &str) -> Result<(), NetError> {
        let cur = self.ifreq(ifname, "SIOCGIFFLAGS", libc::SIOCGIFFLAGS, |_| {})?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { cur.ifr_ifru.ifru_flags } | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        self.ifreq(ifname, "SIOCSIFFLAGS", libc::SIOCSIFFLAGS, |r| r.ifr_ifru.ifru_flags = flags)?;
        Ok(())
    }
}

/// The first interface that is not loopback (virtio-net's eth0).
fn first_interface() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Loopback up, always: even `--network none` sandboxes have 127.0.0.1.
pub fn loopback_up() -> Result<(), NetError> {
    let c = Ctl::new().map_err(|source| NetError::Ioctl { op: "socket", ifname: "lo".into(), source })?;
    c.up("lo")
}

pub fn configure(cfg: &NetConfig) -> Result<String, NetError> {
    let (addr, mask) = parse_cidr(&cfg.address)?;
    let gw: Option<Ipv4Addr> = cfg
        .gateway
        .as_deref()
        .map(|g| g.parse().map_err(|_| NetError::Config(format!("gateway {g:?} is not IPv4"))))
        .transpose()?;
    let ifname = first_interface().ok_or(NetError::NoInterface)?;
    let c = Ctl::new().map_err(|source| NetError::Ioctl { op: "socket", ifname: ifname.clone(), source })?;
    c.ifreq(&ifname, "SIOCSIFADDR", libc::SIOCSIFADDR, |r| r.ifr_ifru.ifru_addr = sockaddr(addr))?;
    c.ifreq(&ifname, "SIOCSIFNETMASK", libc::SIOCSIFNETMASK, |r| r.ifr_ifru.ifru_netmask = sockaddr(mask))?;
    if let Some(mac) = &cfg.mac {
        let b = parse_mac(mac)?;
        let mut hw = libc::sockaddr { sa_family: libc::ARPHRD_ETHER, sa_data: [0; 14] };
        for (d, s) in hw.sa_data.iter_mut().zip(b) {
            *d = s as libc::c_char;
        }
        c.ifreq(&ifname, "SIOCSIFHWADDR", libc::SIOCSIFHWADDR, |r| r.ifr_ifru.ifru_hwaddr = hw)?;
    }
    if cfg.mtu > 0 {
        let mtu = i32::try_from(cfg.mtu).map_err(|_| NetError::Config(format!("mtu {}", cfg.mtu)))?;
        c.ifreq(&ifname, "SIOCSIFMTU", libc::SIOCSIFMTU, |r| r.ifr_ifru.ifru_mtu = mtu)?;
    }
    c.up(&ifname)?;
    if let Some(gw) = gw {
        // SAFETY: rtentry is plain data; all-zero is valid.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags = (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort;
        // SAFETY: SIOCADDRT reads one rtentry that lives on our stack for the call.
        let rc = unsafe { libc::ioctl(c.0.as_raw_fd(), libc::SIOCADDRT as _, &rt) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(NetError::Ioctl { op: "SIOCADDRT", ifname, source: e });
            }
        }
    }
    Ok(ifname)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_into_address_and_mask() {
        assert_eq!(
            parse_cidr("10.88.0.5/16").expect("ok"),
            ("10.88.0.5".parse().expect("a"), "255.255.0.0".parse().expect("m"))
        );
        assert_eq!(parse_cidr("1.2.3.4/0").expect("ok").1, Ipv4Addr::UNSPECIFIED);
        for bad in ["10.88.0.5", "10.88.0.5/33", "x/8", "::1/64"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn macs_parse_and_bad_or_multicast_ones_are_refused() {
        assert_eq!(parse_mac("02:49:53:0a:ff:02").expect("ok"), [2, 0x49, 0x53, 0x0a, 0xff, 2]);
        for bad in
            ["", "02:49:53:00:00", "02:49:53:00:00:02:03", "02:49:53:00:00:zz", "03:00:00:00:00:01", "2:49:53:00:00:02"]
        {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }
}
