//! Routes between the device's queues and the host's unix sockets: packets by
//! (host port, guest port) to their connection, socket events by fd; carries out the
//! steps a connection returns. All sockets sit in one inner epoll whose fd the device's
//! event loop watches.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{ErrorKind, Read as _};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::conn::{Conn, HostRead, State, Step};
use super::handshake::{self, Peeked, MAX_CONNECT_LINE};
use crate::virtio::vsock::{op, Packet, VsockBackend, HOST_CID, TYPE_STREAM};

const MAX_CONNECTIONS: usize = 1024;
/// Control packets (RST, credit, REQUEST/RESPONSE, SHUTDOWN) waiting for the guest at
/// most, as in Firecracker: a guest that stops taking them cannot grow our memory.
pub const MAX_CONTROL_QUEUE: usize = 256;
/// Host-side ports we hand out for host-initiated connections start here.
const FIRST_LOCAL_PORT: u32 = 1 << 30;
const LISTENER_TOKEN: u64 = u64::MAX;

#[derive(Debug, thiserror::Error)]
pub enum MuxerError {
    #[error("cannot listen on {path}: {source}")]
    Listen { path: PathBuf, source: std::io::Error },
    #[error("epoll: {0}")]
    Epoll(std::io::Error),
}

/// (host port, guest port)
type Key = (u32, u32);

/// Which connection (both ends) and op a queued control packet is for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ControlId(u64, u64, u32, u32, u16);

impl ControlId {
    fn of(p: &Packet) -> Self {
        ControlId(p.hdr.src_cid, p.hdr.dst_cid, p.hdr.src_port, p.hdr.dst_port, p.hdr.op)
    }
}

pub struct UnixMuxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    /// Host clients that have not finished their `CONNECT` line.
    pending: HashMap<RawFd, UnixStream>,
    conns: HashMap<Key, Conn>,
    by_fd: HashMap<RawFd, Key>,
    /// Control packets for the guest, in order; at most one of each op per key.
    rxq: VecDeque<Packet>,
    queued: HashSet<ControlId>,
    /// Control packets not queued because the queue was full or one was pending.
    dropped_control: u64,
    /// Connections whose host socket has data (or EOF) to read.
    readable: VecDeque<Key>,
    next_port: u32,
}

impl UnixMuxer {
    /// Listens on `uds_path` (replacing a stale socket file).
    pub fn new(guest_cid: u64, uds_path: &Path) -> Result<Self, MuxerError> {
        let listen_err = |source| MuxerError::Listen { path: uds_path.into(), source };
        match std::fs::remove_file(uds_path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(listen_err(e)),
        }
        let listener = UnixListener::bind(uds_path).map_err(listen_err)?;
        listener.set_nonblocking(true).map_err(listen_err)?;
        let epoll = Epoll::new().map_err(MuxerError::Epoll)?;
        epoll
            .ctl(ControlOperation::Add, listener.as_raw_fd(), EpollEvent::new(EventSet::IN, LISTENER_TOKEN))
            .map_err(MuxerError::Epoll)?;
        Ok(Self {
            guest_cid,
            uds_path: uds_path.into(),
            listener,
            epoll,
            pending: HashMap::new(),
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            rxq: VecDeque::new(),
            queued: HashSet::new(),
            dropped_control: 0,
            readable: VecDeque::new(),
            next_port: FIRST_LOCAL_PORT,
        })
    }

    /// Queues a control packet unless one of the same op for the same key is already
    /// waiting (the guest resyncs from the next packet's credit fields) or the queue is
    /// full (then the guest, which is not taking packets, loses it).
    fn push_control(&mut self, p: Packet) {
        let id = ControlId::of(&p);
        if self.rxq.len() >= MAX_CONTROL_QUEUE || !self.queued.insert(id) {
            self.dropped_control += 1;
            if crate::virtio::worth_logging(self.dropped_control) {
                log::warn!(
                    "vsock: control packet dropped ({} so far): queue full or already pending",
                    self.dropped_control
                );
            }
            return;
        }
        self.rxq.push_back(p);
    }

    /// Control packets queued for the guest now, and dropped so far (tests, stats).
    pub fn control_queue(&self) -> (usize, u64) {
        (self.rxq.len(), self.dropped_control)
    }

    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    /// Live connections (for tests and stats).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// A packet of connection `key` for the guest, with its credit fields.
    fn packet(&mut self, key: Key, op: u16, flags: u32) -> Packet {
        let mut p = Packet::to_guest(self.guest_cid, key.0, key.1, op);
        if let Some(c) = self.conns.get_mut(&key) {
            (p.hdr.buf_alloc, p.hdr.fwd_cnt) = c.credit_fields();
        }
        p.hdr.flags = flags;
        p
    }

    /// Carries out what a connection asked for, then refreshes what we watch for it.
    fn apply(&mut self, key: Key, step: Step) {
        match step {
            Step::Nothing => {}
            Step::Control(op, flags) => {
                let p = self.packet(key, op, flags);
                self.push_control(p);
            }
            Step::Reset => return self.reset_conn(key),
        }
        self.set_interest(key);
    }

    fn set_interest(&mut self, key: Key) {
        let Some(c) = self.conns.get_mut(&key) else { return };
        let want = c.wanted();
        if want == c.interest {
            return;
        }
        let fd = c.stream.as_raw_fd();
        if let Err(e) = self.epoll.ctl(ControlOperation::Modify, fd, EpollEvent::new(want, fd as u64)) {
            log::warn!("vsock: epoll modify for port {}: {e}", key.1);
        }
        c.interest = want;
    }

    fn add_conn(&mut self, key: Key, conn: Conn) -> bool {
        let fd = conn.stream.as_raw_fd();
        if let Err(e) = self.epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::empty(), fd as u64)) {
            log::warn!("vsock: epoll add: {e}");
            return false;
        }
        self.by_fd.insert(fd, key);
        self.conns.insert(key, conn);
        self.set_interest(key);
        true
    }

    fn remove(&mut self, key: Key) {
        if let Some(c) = self.conns.remove(&key) {
            let fd = c.stream.as_raw_fd();
            let _ = self.epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
            self.by_fd.remove(&fd);
        }
        self.readable.retain(|k| *k != key);
    }

    /// Ends a connection both ways: RST to the guest, the host socket closed.
    fn reset_conn(&mut self, key: Key) {
        let p = self.packet(key, op::RST, 0);
        self.push_control(p);
        self.remove(key);
    }

    fn free_port(&mut self, guest_port: u32) -> u32 {
        loop {
            let p = self.next_port;
            self.next_port = self.next_port.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            if !self.conns.contains_key(&(p, guest_port)) {
                return p;
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let fd = stream.as_raw_fd();
                    let ev = EpollEvent::new(EventSet::IN, fd as u64);
                    if self.epoll.ctl(ControlOperation::Add, fd, ev).is_ok() {
                        self.pending.insert(fd, stream);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("vsock: accept on {}: {e}", self.uds_path.display());
                    return;
                }
            }
        }
    }

    /// Reads a pending client's `CONNECT <port>` line, without consuming what follows it.
    fn read_connect(&mut self, fd: RawFd) {
        if !self.pending.contains_key(&fd) {
            return;
        }
        let mut buf = [0u8; MAX_CONNECT_LINE];
        // SAFETY: fd is the live socket owned by `self.pending`, and buf is a writable
        // buffer of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) };
        let n = match n {
            n if n > 0 => n as usize,
            n if n < 0 && std::io::Error::last_os_error().kind() == ErrorKind::WouldBlock => return,
            _ => return self.drop_pending(fd),
        };
        let (len, port) = match handshake::peek(&buf[..n]) {
            Peeked::Incomplete => return,
            Peeked::TooLong => {
                log::warn!("vsock: host client sent no CONNECT line within {MAX_CONNECT_LINE} bytes");
                return self.drop_pending(fd);
            }
            Peeked::Line { len, port } => (len, port),
        };
        let Some(mut stream) = self.pending.remove(&fd) else { return };
        let _ = self.epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
        let mut line = vec![0u8; len];
        if stream.read_exact(&mut line).is_err() {
            return;
        }
        let Some(port) = port else {
            log::warn!("vsock: bad handshake {:?}", String::from_utf8_lossy(&line[..len - 1]));
            return;
        };
        if self.conns.len() >= MAX_CONNECTIONS {
            log::warn!("vsock: {MAX_CONNECTIONS} connections open, refusing another");
            return;
        }
        let key = (self.free_port(port), port);
        if self.add_conn(key, Conn::new(stream, State::Connecting)) {
            self.apply(key, Step::Control(op::REQUEST, 0));
        }
    }

    fn drop_pending(&mut self, fd: RawFd) {
        if self.pending.remove(&fd).is_some() {
            let _ = self.epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
        }
    }

    /// The guest connects to host port `key.0`.
    fn guest_connect(&mut self, key: Key, buf_alloc: u32, fwd_cnt: u32) {
        if self.conns.len() >= MAX_CONNECTIONS {
            return self.push_rst(key);
        }
        let path = format!("{}_{}", self.uds_path.display(), key.0);
        match UnixStream::connect(&path).and_then(|s| s.set_nonblocking(true).map(|_| s)) {
            Ok(stream) => {
                let mut conn = Conn::new(stream, State::Established);
                conn.peer_credit_update(buf_alloc, fwd_cnt);
                if self.add_conn(key, conn) {
                    self.apply(key, Step::Control(op::RESPONSE, 0));
                } else {
                    self.push_rst(key);
                }
            }
            Err(e) => {
                log::debug!("vsock: guest connect to {path}: {e}");
                self.push_rst(key);
            }
        }
    }

    /// RST for a key that has no connection.
    fn push_rst(&mut self, key: Key) {
        self.push_control(Packet::to_guest(self.guest_cid, key.0, key.1, op::RST));
    }

    /// The next packet from a readable host socket, if any.
    fn read_host(&mut self, key: Key, max: usize) -> Option<Packet> {
        let read = self.conns.get_mut(&key)?.read_host(max);
        let packet = match read {
            HostRead::Nothing => None,
            HostRead::CreditRequest => Some(self.packet(key, op::CREDIT_REQUEST, 0)),
            HostRead::Data { data, then_credit_request } => {
                if then_credit_request {
                    let req = self.packet(key, op::CREDIT_REQUEST, 0);
                    self.push_control(req);
                }
                let mut p = self.packet(key, op::RW, 0);
                p.data = data;
                Some(p)
            }
            HostRead::Shutdown(flags) => Some(self.packet(key, op::SHUTDOWN, flags)),
        };
        self.set_interest(key);
        packet
    }
}

impl VsockBackend for UnixMuxer {
    fn send_pkt(&mut self, pkt: Packet) {
        let h = pkt.hdr;
        let key = (h.dst_port, h.src_port);
        let known = self.conns.contains_key(&key);
        if h.dst_cid != HOST_CID || h.type_ != TYPE_STREAM || (!known && h.op != op::REQUEST) {
            if let Some(r) = pkt.rst_reply() {
                self.push_control(r);
            }
            return;
        }
        if h.op == op::REQUEST {
            return if known { self.reset_conn(key) } else { self.guest_connect(key, h.buf_alloc, h.fwd_cnt) };
        }
        let Some(c) = self.conns.get_mut(&key) else { return };
        c.peer_credit_update(h.buf_alloc, h.fwd_cnt);
        let step = match h.op {
            op::RESPONSE => c.guest_response(key.0),
            op::RST => return self.remove(key),
            op::SHUTDOWN => c.guest_shutdown(h.flags),
            op::RW => c.guest_data(pkt.data, key.1),
            op::CREDIT_REQUEST => Step::Control(op::CREDIT_UPDATE, 0),
            op::CREDIT_UPDATE => Step::Nothing,
            _ => Step::Reset,
        };
        self.apply(key, step);
    }

    fn recv_pkt(&mut self, max_payload: usize) -> Option<Packet> {
        if let Some(p) = self.rxq.pop_front() {
            self.queued.remove(&ControlId::of(&p));
            return Some(p);
        }
        while let Some(key) = self.readable.pop_front() {
            if let Some(p) = self.read_host(key, max_payload) {
                return Some(p);
            }
        }
        None
    }

    fn has_pending_rx(&self) -> bool {
        !self.rxq.is_empty() || !self.readable.is_empty()
    }

    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn process_events(&mut self) {
        let mut events = [EpollEvent::default(); 32];
        let n = match self.epoll.wait(0, &mut events) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("vsock: epoll wait: {e}");
                return;
            }
        };
        for ev in &events[..n] {
            let token = ev.data();
            if token == LISTENER_TOKEN {
                self.accept();
                continue;
            }
            let fd = token as RawFd;
            if self.pending.contains_key(&fd) {
                self.read_connect(fd);
            } else if let Some(&key) = self.by_fd.get(&fd) {
                let Some(c) = self.conns.get_mut(&key) else { continue };
                let (step, read) = c.socket_event(ev.event_set());
                if read {
                    self.readable.push_back(key);
                }
                self.apply(key, step);
            }
        }
    }

    fn reset(&mut self) {
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        for k in keys {
            self.remove(k);
        }
        let fds: Vec<RawFd> = self.pending.keys().copied().collect();
        for fd in fds {
            self.drop_pending(fd);
        }
        self.rxq.clear();
        self.queued.clear();
    }
}

impl Drop for UnixMuxer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}
