//! Published ports (`isola run -p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]`): a
//! small forwarding process per sandbox, `isola-ports`. The caller binds each host
//! port itself (so a port in use is a clear error at once, and ports below 1024 need
//! no privilege later), then hands the sockets to the forwarder, which runs as
//! nobody with no capabilities and relays each connection (or UDP peer) to the
//! sandbox's bridge address. Binding the host port directly, not a DNAT rule, means
//! 127.0.0.1 works as on any other address and nothing outlives the forwarder: it
//! ends when the VMM does (a pidfd), and the sandbox's cleanup kills it by pid.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How the forwarder shows in `ps` and is recognised by pid later.
pub const EXE: &str = "isola-ports";
/// Connections (TCP) or peers (UDP) relayed at once per published port.
pub const MAX_FLOWS: usize = 256;
/// A UDP peer silent this long is forgotten.
const UDP_IDLE: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A relayed TCP connection silent both ways this long is closed (as a NAT forgets
/// one), so idle clients cannot hold the [`MAX_FLOWS`] slots for ever.
pub const TCP_IDLE: Duration = Duration::from_secs(15 * 60);
/// The forwarder's descriptors: the VMM's pidfd at FD_BASE, then one socket per port.
const FD_BASE: i32 = 200;
/// Ports one sandbox may publish.
pub const MAX_PORTS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

/// One `-p`: host address and port, the container's port, the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("-p {0:?}: {1} (the form is [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp])")]
    Syntax(String, &'static str),
    #[error("publishing {0}: the host port is already in use")]
    InUse(PortSpec),
    #[error("publishing {0}: {1}")]
    Bind(PortSpec, std::io::Error),
    #[error("starting {EXE}: {0}")]
    Spawn(std::io::Error),
    #[error("watching the VMM (pidfd_open): {0}")]
    Pidfd(std::io::Error),
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}->{}/{}", self.host_ip, self.host_port, self.container_port, self.proto.as_str())
    }
}

fn port(s: &str, what: &'static str) -> Result<u16, &'static str> {
    s.parse::<u16>().ok().filter(|p| *p > 0).ok_or(what)
}

impl std::str::FromStr for PortSpec {
    type Err = PortError;
    fn from_str(s: &str) -> Result<Self, PortError> {
        let bad = |why| PortError::Syntax(s.to_string(), why);
        let (addr, proto) = match s.rsplit_once('/') {
            Some((a, "tcp")) => (a, Proto::Tcp),
            Some((a, "udp")) => (a, Proto::Udp),
            Some(_) => return Err(bad("the protocol is tcp or udp")),
            None => (s, Proto::Tcp),
        };
        let parts: Vec<&str> = addr.split(':').collect();
        let (ip, host, container) = match parts[..] {
            [h, c] => (Ipv4Addr::UNSPECIFIED, h, c),
            [ip, h, c] => (ip.parse().map_err(|_| bad("HOST_IP is not an IPv4 address"))?, h, c),
            _ => return Err(bad("give HOST_PORT:CONTAINER_PORT")),
        };
        Ok(PortSpec {
            host_ip: ip,
            host_port: port(host, "HOST_PORT is not a port number (1-65535)").map_err(bad)?,
            container_port: port(container, "CONTAINER_PORT is not a port number (1-65535)").map_err(bad)?,
            proto,
        })
    }
}

/// Binds the host side of `spec`.
pub fn bind(spec: &PortSpec) -> Result<OwnedFd, PortError> {
    let at = SocketAddrV4::new(spec.host_ip, spec.host_port);
    let r = match spec.proto {
        Proto::Tcp => TcpListener::bind(at).map(OwnedFd::from),
        Proto::Udp => UdpSocket::bind(at).map(OwnedFd::from),
    };
    r.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            PortError::InUse(*spec)
        } else {
            PortError::Bind(*spec, e)
        }
    })
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The forwarder for the sandbox in `dir` (named on its command line), relaying to
/// `guest`, ending with process `vmm_pid`, with every host port already bound (the
/// caller drops it to nobody, after any hook that still needs root). `program` is a binary that serves [`ARG`] (the `isola` CLI, through
/// [`main_if_forwarder`]). What is returned besides the command must live until it
/// is spawned.
pub fn command(
    program: &Path,
    dir: &Path,
    guest: Ipv4Addr,
    vmm_pid: i32,
    ports: &[PortSpec],
) -> Result<(Command, Vec<OwnedFd>, crate::backend::unprivileged::Program), PortError> {
    let mut fds = vec![pidfd_open(vmm_pid).map_err(PortError::Pidfd)?];
    for p in ports {
        fds.push(bind(p)?);
    }
    // Opened now and run by descriptor: nobody may not reach the binary's path.
    let prog =
        crate::backend::unprivileged::Program::open_exec_only(program, &crate::backend::unprivileged::exec_only_dir())
            .map_err(PortError::Spawn)?;
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    if raw.iter().any(|fd| *fd >= FD_BASE) || ports.len() > MAX_PORTS {
        return Err(PortError::Spawn(std::io::Error::other("too many descriptors or ports")));
    }
    let job = PortsJob {
        // The directory with its trailing slash, as every helper names it (in `ps`).
        dir: dir.join(""),
        guest,
        ports: ports.iter().map(|p| (p.proto, p.container_port)).collect(),
    };
    let mut c = crate::background::command(prog.via_fd(), &job);
    c.arg0(EXE);
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: the hook only calls dup2 with integers (async-signal-safe); the new
    // descriptors FD_BASE, FD_BASE + 1, … are what the forwarder reads, and dup2
    // leaves them open across exec. No source is at or above FD_BASE (checked above),
    // so none is overwritten, nor is the program's descriptor. The sources stay
    // valid: `fds` is returned, to live until after the spawn.
    unsafe {
        c.pre_exec(move || {
            for (i, fd) in raw.iter().enumerate() {
                if libc::dup2(*fd, FD_BASE + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok((c, fds, prog))
}

/// In a binary's `main`: when started as the forwarder, serve and never return.
/// The forwarder's job ([`crate::background`]): with the VMM's pidfd on FD_BASE and one
/// socket per port after it, in this order.
#[derive(Debug, Serialize, Deserialize)]
pub struct PortsJob {
    pub dir: std::path::PathBuf,
    pub guest: Ipv4Addr,
    pub ports: Vec<(Proto, u16)>,
}

impl crate::background::Job for PortsJob {
    const NAME: &'static str = "ports";
}

/// The forwarder's main (the `isola` CLI runs it through [`crate::background::run_if`]).
pub fn forward(j: PortsJob) -> i32 {
    crate::background::exit_code(EXE, forwarder(&j))
}

fn forwarder(j: &PortsJob) -> Result<(), String> {
    if j.ports.len() > MAX_PORTS {
        return Err("too many ports".into());
    }
    // Everything it needs is open: from here on it may only relay (before any thread,
    // which inherits the list).
    crate::backend::own_filter::confine_self(crate::backend::own_filter::PORTS, true).map_err(|e| e.to_string())?;
    // SAFETY: descriptor FD_BASE was set up by `command` for this process alone.
    let vmm = unsafe { OwnedFd::from_raw_fd(FD_BASE) };
    for (i, (proto, port)) in j.ports.iter().enumerate() {
        let to = SocketAddr::V4(SocketAddrV4::new(j.guest, *port));
        // SAFETY: descriptors FD_BASE + 1… were set up by `command`, one socket each, in
        // this order.
        let fd = unsafe { OwnedFd::from_raw_fd(FD_BASE + 1 + i as i32) };
        match proto {
            Proto::Tcp => {
                let l = TcpListener::from(fd);
                std::thread::spawn(move || forward_tcp(l, to));
            }
            Proto::Udp => {
                let s = UdpSocket::from(fd);
                std::thread::spawn(move || forward_udp(s, to));
            }
        }
    }
    // Ends when the VMM does: its pidfd turns readable.
    let mut pfd = libc::pollfd { fd: vmm.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, -1) };
        if n > 0 || (n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted) {
            return Ok(());
        }
    }
}

/// When either direction of a connection last carried data (ms since `epoch`).
struct Activity {
    epoch: Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity { epoch: Instant::now(), last_ms: 0.into() }
    }
    fn touch(&self) {
        self.last_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Copies one direction until EOF or error, or until neither direction has carried
/// anything for `idle` (then both sides are closed), then shuts its half down.
fn pump(mut from: TcpStream, mut to: TcpStream, activity: &Activity, idle: Duration) {
    use std::io::{Read, Write};
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
    let _ = from.set_read_timeout(Some(tick));
    // A peer that stops reading holds a write no longer than the idle limit.
    let _ = to.set_write_timeout(Some(idle));
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                activity.touch();
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if activity.idle_for() >= idle {
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// Accepts on `listener` and relays each connection to `to`, at most [`MAX_FLOWS`] at
/// once, each closed after [`TCP_IDLE`] without traffic.
pub fn forward_tcp(listener: TcpListener, to: SocketAddr) {
    forward_tcp_idle(listener, to, TCP_IDLE)
}

fn forward_tcp_idle(listener: TcpListener, to: SocketAddr, idle: Duration) {
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        if live.load(Ordering::SeqCst) >= MAX_FLOWS {
            continue; // dropped: closes the connection
        }
        live.fetch_add(1, Ordering::SeqCst);
        let live = Arc::clone(&live);
        std::thread::spawn(move || {
            if let Ok(upstream) = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
                if let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) {
                    let activity = Arc::new(Activity::new());
                    let a2 = Arc::clone(&activity);
                    let back = std::thread::spawn(move || pump(u2, c2, &a2, idle));
                    pump(client, upstream, &activity, idle);
                    let _ = back.join();
                }
            }
            live.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// One UDP peer being relayed: its upstream socket, when it last sent, and the flag
/// that ends its reply thread once it is evicted.
struct UdpPeer {
    up: UdpSocket,
    last: Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// Relays datagrams between each peer of `socket` and `to`, one upstream socket per
/// peer (so replies find their way back), at most [`MAX_FLOWS`] peers at once. When
/// the table is full the peer silent longest makes room (UDP sources are forged at
/// will: a refusal would let a flood of forged peers lock real ones out for
/// [`UDP_IDLE`]); reply threads, evicted ones finishing included, stay under twice
/// that.
pub fn forward_udp(socket: UdpSocket, to: SocketAddr) {
    forward_udp_with(socket, to, MAX_FLOWS)
}

fn forward_udp_with(socket: UdpSocket, to: SocketAddr, max_peers: usize) {
    let peers: Arc<Mutex<HashMap<SocketAddr, UdpPeer>>> = Arc::default();
    let threads = Arc::new(AtomicUsize::new(0));
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
        let mut map = peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = map.get_mut(&peer) {
            p.last = Instant::now();
            let _ = p.up.send(&buf[..n]);
            continue;
        }
        if threads.load(Ordering::SeqCst) >= 2 * max_peers {
            continue;
        }
        if map.len() >= max_peers {
            if let Some(oldest) = map.iter().min_by_key(|(_, p)| p.last).map(|(a, _)| *a) {
                if let Some(p) = map.remove(&oldest) {
                    p.stop.store(true, Ordering::SeqCst);
                }
            }
        }
        let Some(up) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok().filter(|u| u.connect(to).is_ok()) else {
            continue;
        };
        let (Ok(up2), Ok(back)) = (up.try_clone(), socket.try_clone()) else { continue };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _ = up.send(&buf[..n]);
        map.insert(peer, UdpPeer { up, last: Instant::now(), stop: Arc::clone(&stop) });
        drop(map);
        threads.fetch_add(1, Ordering::SeqCst);
        let (peers, threads) = (Arc::clone(&peers), Arc::clone(&threads));
        std::thread::spawn(move || {
            // Short reads, so an evicted peer's thread ends within a second.
            let _ = up2.set_read_timeout(Some(Duration::from_secs(1).min(UDP_IDLE)));
            let mut buf = vec![0u8; 65536];
            let mut last = Instant::now();
            while last.elapsed() < UDP_IDLE && !stop.load(Ordering::SeqCst) {
                match up2.recv(&mut buf) {
                    Ok(n) => {
                        let _ = back.send_to(&buf[..n], peer);
                        last = Instant::now();
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            let mut map = peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Only its own entry: the address may have come back as a new peer.
            if map.get(&peer).is_some_and(|p| Arc::ptr_eq(&p.stop, &stop)) {
                map.remove(&peer);
            }
            drop(map);
            threads.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn port_specs_parse_as_docker_writes_them() {
        let p: PortSpec = "8080:80".parse().expect("plain");
        assert_eq!(
            p,
            PortSpec { host_ip: Ipv4Addr::UNSPECIFIED, host_port: 8080, container_port: 80, proto: Proto::Tcp }
        );
        let p: PortSpec = "127.0.0.1:5353:53/udp".parse().expect("ip and udp");
        assert_eq!((p.host_ip, p.host_port, p.container_port, p.proto), (Ipv4Addr::LOCALHOST, 5353, 53, Proto::Udp));
        assert_eq!(p.to_string(), "127.0.0.1:5353->53/udp");
        for bad in ["80", "0:80", "8080:0", "a:80", "1.2.3:8080:80", "8080:80/sctp", "70000:80", "1:2:3:4", ""] {
            let e = bad.parse::<PortSpec>().expect_err(bad);
            assert!(e.to_string().contains("HOST_PORT:CONTAINER_PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_port_in_use_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let spec = PortSpec {
            host_ip: Ipv4Addr::LOCALHOST,
            host_port: taken.local_addr().expect("addr").port(),
            container_port: 80,
            proto: Proto::Tcp,
        };
        let e = bind(&spec).expect_err("in use");
        assert!(matches!(e, PortError::InUse(_)), "{e}");
        assert!(e.to_string().contains("already in use"), "{e}");
    }

    #[test]
    fn tcp_connections_are_relayed_both_ways() {
        let upstream = TcpListener::bind("127.0.0.1:0").expect("upstream");
        let to = upstream.local_addr().expect("addr");
        std::thread::spawn(move || {
            for c in upstream.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut c = c;
                    let mut line = [0u8; 5];
                    if c.read_exact(&mut line).is_ok() {
                        let _ = c.write_all(&[b"echo:", &line[..]].concat());
                    }
                });
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").expect("front");
        let at = front.local_addr().expect("addr");
        std::thread::spawn(move || forward_tcp(front, to));
        for _ in 0..3 {
            let mut c = TcpStream::connect(at).expect("connect");
            c.write_all(b"hello").expect("write");
            c.shutdown(Shutdown::Write).expect("half-close");
            let mut got = String::new();
            c.read_to_string(&mut got).expect("read");
            assert_eq!(got, "echo:hello");
        }
    }

    /// A client that opens a connection and goes silent loses it after the idle
    /// limit, and its slot; one that keeps talking one way keeps it past the limit.
    #[test]
    fn an_idle_connection_is_closed_and_a_busy_one_kept() {
        let upstream = TcpListener::bind("127.0.0.1:0").expect("upstream");
        let to = upstream.local_addr().expect("addr");
        // The upstream reads whatever comes and never answers.
        std::thread::spawn(move || {
            for c in upstream.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut c = c;
                    let _ = std::io::copy(&mut c, &mut std::io::sink());
                });
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").expect("front");
        let at = front.local_addr().expect("addr");
        let idle = Duration::from_secs(1);
        std::thread::spawn(move || forward_tcp_idle(front, to, idle));
        let mut silent = TcpStream::connect(at).expect("connect");
        silent.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let mut busy = TcpStream::connect(at).expect("connect");
        // The busy one writes every 50 ms for two and a half limits.
        let writer = std::thread::spawn(move || {
            let ok = (0..50).all(|_| {
                std::thread::sleep(Duration::from_millis(50));
                busy.write_all(b"x").is_ok()
            });
            (ok, busy)
        });
        let started = Instant::now();
        let mut buf = [0u8; 8];
        // The silent one is closed (EOF) once the limit passes.
        assert_eq!(silent.read(&mut buf).expect("closed, not timed out"), 0);
        assert!(started.elapsed() >= idle, "{:?}", started.elapsed());
        let (ok, mut busy) = writer.join().expect("writer");
        assert!(ok, "the busy connection was closed");
        busy.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        match busy.read(&mut buf) {
            Err(e) => assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            Ok(n) => panic!("the busy connection was closed ({n})"),
        }
    }

    /// A UDP server that answers each datagram with `re:` and the datagram.
    fn udp_echo() -> SocketAddr {
        let upstream = UdpSocket::bind("127.0.0.1:0").expect("upstream");
        let to = upstream.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = upstream.recv_from(&mut buf) {
                let _ = upstream.send_to(&[b"re:", &buf[..n]].concat(), from);
            }
        });
        to
    }

    /// A table full of forged peers (each sent once and went silent) does not lock a
    /// real one out: the silent one longest makes room, and replies reach the new peer.
    #[test]
    fn a_full_udp_table_makes_room_for_a_new_peer() {
        let to = udp_echo();
        let front = UdpSocket::bind("127.0.0.1:0").expect("front");
        let at = front.local_addr().expect("addr");
        std::thread::spawn(move || forward_udp_with(front, to, 4));
        let forged: Vec<UdpSocket> = (0..4).map(|_| UdpSocket::bind("127.0.0.1:0").expect("peer")).collect();
        for f in &forged {
            f.send_to(b"x", at).expect("send");
        }
        std::thread::sleep(Duration::from_millis(200));
        let real = UdpSocket::bind("127.0.0.1:0").expect("real");
        real.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        real.send_to(b"real", at).expect("send");
        let mut buf = [0u8; 64];
        let (n, _) = real.recv_from(&mut buf).expect("the new peer is relayed though the table was full");
        assert_eq!(&buf[..n], b"re:real");
    }

    #[test]
    fn udp_datagrams_are_relayed_and_replies_reach_their_peer() {
        let to = udp_echo();
        let front = UdpSocket::bind("127.0.0.1:0").expect("front");
        let at = front.local_addr().expect("addr");
        std::thread::spawn(move || forward_udp(front, to));
        for who in ["a", "b"] {
            let peer = UdpSocket::bind("127.0.0.1:0").expect("peer");
            peer.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            peer.send_to(who.as_bytes(), at).expect("send");
            let mut buf = [0u8; 64];
            let (n, from) = peer.recv_from(&mut buf).expect("reply");
            assert_eq!((&buf[..n], from), (format!("re:{who}").as_bytes(), at));
        }
    }
}
