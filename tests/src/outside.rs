//! "The outside world" for network tests: a network namespace behind a veth pair,
//! reached from the bridge through forwarding and NAT, like a host beyond the uplink.
//! Guests may not reach the host's own services, so tests serve from here instead.
//! Made by the test, removed on drop (and replaced when a killed run left one).

use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn ip_quiet(args: &[&str]) {
    let _ = std::process::Command::new("ip").args(args).output();
}

pub struct Outside {
    ns: String,
    veth: String,
    routes: Vec<String>,
    /// The address inside the namespace (what a guest connects to).
    pub addr: Ipv4Addr,
    /// The host's end of the veth (where NATed guest traffic comes from).
    pub host_addr: Ipv4Addr,
}

impl Outside {
    /// `n` (1..=250) picks the /30 (198.18.n.0) and the names; one per test.
    pub fn new(n: u8) -> Self {
        let (ns, veth, peer) = (format!("isola-e2e-out{n}"), format!("ie2e{n}h"), format!("ie2e{n}n"));
        ip_quiet(&["netns", "del", &ns]);
        ip_quiet(&["link", "del", &veth]);
        let (host_addr, addr) = (Ipv4Addr::new(198, 18, n, 1), Ipv4Addr::new(198, 18, n, 2));
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &ns]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        let inside = |args: &[&str]| {
            let mut a = vec!["-n", ns.as_str()];
            a.extend_from_slice(args);
            ip(&a);
        };
        inside(&["addr", "add", &format!("{addr}/30"), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        inside(&["route", "add", "default", "via", &host_addr.to_string()]);
        // This veth plays an uplink: its replies are forwarded back to the bridge.
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{veth}/forwarding"), "1").expect("forwarding on the veth");
        Outside { ns, veth, routes: vec![], addr, host_addr }
    }

    /// Adds `addr` inside the namespace and routes it there from the host (e.g. the
    /// link-local metadata address, to show guests cannot reach it).
    pub fn add_address(&mut self, addr: Ipv4Addr) {
        ip(&["-n", &self.ns, "addr", "add", &format!("{addr}/32"), "dev", "lo"]);
        ip(&["route", "replace", &format!("{addr}/32"), "via", &self.addr.to_string()]);
        self.routes.push(format!("{addr}/32"));
    }

    /// A listener inside the namespace on `addr` (a socket keeps the namespace it was
    /// made in; only the thread that makes it enters the namespace).
    pub fn listen(&self, addr: Ipv4Addr) -> TcpListener {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("the namespace");
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            TcpListener::bind((addr, 0)).expect("listen inside")
        })
        .join()
        .expect("listener thread")
    }

    /// Serves `reply` to every connection on a listener inside the namespace, counting
    /// them, until the returned guard drops.
    pub fn serve(&self, addr: Ipv4Addr, reply: &'static str) -> Server {
        Server::start(self.listen(addr), reply)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        for r in &self.routes {
            ip_quiet(&["route", "del", r]);
        }
        ip_quiet(&["link", "del", &self.veth]);
        ip_quiet(&["netns", "del", &self.ns]);
    }
}

/// A TCP server answering one line per connection; `accepted()` counts connections.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
    count: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(l: TcpListener, reply: &'static str) -> Self {
        let port = l.local_addr().expect("addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, c) = (stop.clone(), count.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut conn, _)) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        let _ = std::io::Write::write_all(&mut conn, reply.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Server { port, stop, count, thread: Some(thread) }
    }

    pub fn accepted(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
