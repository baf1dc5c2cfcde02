//! The hybrid-vsock backend: one listening unix socket for host-initiated connections
//! (`CONNECT <port>\n` → `OK <local port>\n`) and `<uds_path>_<port>` for the guest's.
//! Each connection runs the virtio-vsock stream state machine with credit-based flow
//! control; all sockets sit in one inner epoll whose fd the device's event loop watches.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::{op, Packet, VsockBackend, HOST_CID, MAX_PAYLOAD, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};

/// Bytes the guest may have in flight towards one host socket (our receive buffer).
pub const BUF_ALLOC: u32 = 256 * 1024;
/// Tell the guest about freed buffer space once this much has been forwarded.
const CREDIT_UPDATE_THRESHOLD: u32 = BUF_ALLOC / 4;
/// Longest `CONNECT <port>\n` line we wait for.
const MAX_CONNECT_LINE: usize = 32;
const MAX_CONNECTIONS: usize = 1024;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// We sent REQUEST for a host client and wait for the guest's RESPONSE.
    Connecting,
    Established,
}

struct Conn {
    stream: UnixStream,
    state: State,
    /// Guest→host bytes the host socket has not taken yet.
    tx_buf: VecDeque<u8>,
    /// Bytes written to the host socket (our fwd_cnt) and the last value the guest saw.
    fwd_cnt: u32,
    fwd_cnt_told: u32,
    /// The guest's receive buffer and how much of it it has consumed.
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// Host→guest bytes sent.
    rx_cnt: u32,
    /// Set when the host socket is readable and a read is queued.
    rx_queued: bool,
    credit_requested: bool,
    /// The guest will send / receive no more.
    peer_shut_send: bool,
    peer_shut_rcv: bool,
    /// The host socket hung up or reached EOF.
    host_eof: bool,
    host_hup: bool,
    interest: EventSet,
}

impl Conn {
    fn new(stream: UnixStream, state: State) -> Self {
        Self {
            stream,
            state,
            tx_buf: VecDeque::new(),
            fwd_cnt: 0,
            fwd_cnt_told: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            rx_cnt: 0,
            rx_queued: false,
            credit_requested: false,
            peer_shut_send: false,
            peer_shut_rcv: false,
            host_eof: false,
            host_hup: false,
            interest: EventSet::empty(),
        }
    }

    /// How many more bytes the guest can take.
    fn peer_credit(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn wanted(&self) -> EventSet {
        let mut e = EventSet::empty();
        if self.state == State::Established
            && !self.rx_queued
            && !self.host_eof
            && !self.peer_shut_rcv
            && self.peer_credit() > 0
        {
            e |= EventSet::IN;
        }
        if !self.tx_buf.is_empty() {
            e |= EventSet::OUT;
        }
        e
    }

    /// Writes as much of `tx_buf` as the host socket takes. Err means the socket is gone.
    fn flush(&mut self) -> std::io::Result<()> {
        while !self.tx_buf.is_empty() {
            let (front, _) = self.tx_buf.as_slices();
            match self.stream.write(front) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.tx_buf.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A host client that has not finished its `CONNECT` line.
struct Pending {
    stream: UnixStream,
}

pub struct UnixMuxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    pending: HashMap<RawFd, Pending>,
    conns: HashMap<Key, Conn>,
    by_fd: HashMap<RawFd, Key>,
    /// Control packets for the guest, in order.
    rxq: VecDeque<Packet>,
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
            readable: VecDeque::new(),
            next_port: FIRST_LOCAL_PORT,
        })
    }

    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    /// Live connections (for tests and stats).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn packet(&mut self, key: Key, op: u16) -> Packet {
        let mut p = Packet::to_guest(self.guest_cid, key.0, key.1, op);
        if let Some(c) = self.conns.get_mut(&key) {
            p.hdr.buf_alloc = BUF_ALLOC;
            p.hdr.fwd_cnt = c.fwd_cnt;
            c.fwd_cnt_told = c.fwd_cnt;
        }
        p
    }

    fn push(&mut self, key: Key, op: u16, flags: u32) {
        let mut p = self.packet(key, op);
        p.hdr.flags = flags;
        self.rxq.push_back(p);
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
        self.push(key, op::RST, 0);
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
                        self.pending.insert(fd, Pending { stream });
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
        // SAFETY: fd is the live socket owned by `p`, and buf is a writable buffer of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) };
        let n = match n {
            n if n > 0 => n as usize,
            n if n < 0 && std::io::Error::last_os_error().kind() == ErrorKind::WouldBlock => return,
            _ => return self.drop_pending(fd),
        };
        let Some(nl) = buf[..n].iter().position(|&b| b == b'\n') else {
            if n == buf.len() {
                log::warn!("vsock: host client sent no CONNECT line within {MAX_CONNECT_LINE} bytes");
                self.drop_pending(fd);
            }
            return;
        };
        let mut line = vec![0u8; nl + 1];
        let Some(mut p) = self.pending.remove(&fd) else { return };
        let _ = self.epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
        if p.stream.read_exact(&mut line).is_err() {
            return;
        }
        let port = std::str::from_utf8(&line[..nl])
            .ok()
            .and_then(|l| l.trim_end_matches('\r').strip_prefix("CONNECT "))
            .and_then(|s| s.trim().parse::<u32>().ok());
        let Some(port) = port else {
            log::warn!("vsock: bad handshake {:?}", String::from_utf8_lossy(&line[..nl]));
            return;
        };
        if self.conns.len() >= MAX_CONNECTIONS {
            log::warn!("vsock: {MAX_CONNECTIONS} connections open, refusing another");
            return;
        }
        let key = (self.free_port(port), port);
        if self.add_conn(key, Conn::new(p.stream, State::Connecting)) {
            self.push(key, op::REQUEST, 0);
        }
    }

    fn drop_pending(&mut self, fd: RawFd) {
        if self.pending.remove(&fd).is_some() {
            let _ = self.epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
        }
    }

    /// The guest connects to host port `key.0`.
    fn guest_connect(&mut self, key: Key) {
        if self.conns.len() >= MAX_CONNECTIONS {
            self.push_rst(key);
            return;
        }
        let path = format!("{}_{}", self.uds_path.display(), key.0);
        match UnixStream::connect(&path).and_then(|s| s.set_nonblocking(true).map(|_| s)) {
            Ok(stream) => {
                if self.add_conn(key, Conn::new(stream, State::Established)) {
                    self.push(key, op::RESPONSE, 0);
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

    fn push_rst(&mut self, key: Key) {
        self.rxq.push_back(Packet::to_guest(self.guest_cid, key.0, key.1, op::RST));
    }

    fn guest_data(&mut self, key: Key, data: Vec<u8>) {
        let Some(c) = self.conns.get_mut(&key) else { return };
        if c.state != State::Established || c.peer_shut_send {
            return self.reset_conn(key);
        }
        if c.tx_buf.len() + data.len() > BUF_ALLOC as usize {
            log::warn!("vsock: guest port {} overran its credit; resetting", key.1);
            return self.reset_conn(key);
        }
        c.tx_buf.extend(data);
        if c.flush().is_err() {
            return self.reset_conn(key);
        }
        self.after_forward(key);
    }

    /// Credit update when the guest may be waiting for room; EOF towards the host once
    /// the guest is done sending and everything is written.
    fn after_forward(&mut self, key: Key) {
        let Some(c) = self.conns.get_mut(&key) else { return };
        let unreported = c.fwd_cnt.wrapping_sub(c.fwd_cnt_told);
        let done_sending = c.peer_shut_send && c.tx_buf.is_empty();
        if done_sending {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        if unreported >= CREDIT_UPDATE_THRESHOLD {
            self.push(key, op::CREDIT_UPDATE, 0);
        }
        self.set_interest(key);
    }

    fn guest_shutdown(&mut self, key: Key, flags: u32) {
        let Some(c) = self.conns.get_mut(&key) else { return };
        c.peer_shut_rcv |= flags & SHUTDOWN_RCV != 0;
        c.peer_shut_send |= flags & SHUTDOWN_SEND != 0;
        if c.peer_shut_send && (c.peer_shut_rcv || c.host_eof) {
            // The guest closed: a last try at pending bytes, then the RST it waits for.
            let _ = c.flush();
            return self.reset_conn(key);
        }
        self.after_forward(key);
    }

    fn on_stream_event(&mut self, key: Key, ev: EventSet) {
        let Some(c) = self.conns.get_mut(&key) else { return };
        if ev.contains(EventSet::OUT) || ev.intersects(EventSet::HANG_UP | EventSet::ERROR) && !c.tx_buf.is_empty() {
            if c.flush().is_err() {
                return self.reset_conn(key);
            }
            self.after_forward(key);
        }
        let Some(c) = self.conns.get_mut(&key) else { return };
        c.host_hup |= ev.intersects(EventSet::HANG_UP | EventSet::ERROR);
        let readable = ev.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::READ_HANG_UP | EventSet::ERROR);
        if readable && !c.rx_queued && c.state == State::Established && !c.host_eof {
            c.rx_queued = true;
            self.readable.push_back(key);
        }
        self.set_interest(key);
    }

    /// Reads from a readable host socket into a packet of at most `max` bytes.
    fn read_host(&mut self, key: Key, max: usize) -> Option<Packet> {
        let c = self.conns.get_mut(&key)?;
        c.rx_queued = false;
        let credit = c.peer_credit() as usize;
        if credit == 0 {
            if !c.credit_requested {
                c.credit_requested = true;
                self.set_interest(key);
                return Some(self.packet(key, op::CREDIT_REQUEST));
            }
            self.set_interest(key);
            return None;
        }
        let mut data = vec![0u8; max.min(credit).min(MAX_PAYLOAD)];
        match c.stream.read(&mut data) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                self.set_interest(key);
                None
            }
            Ok(n) if n > 0 => {
                data.truncate(n);
                c.rx_cnt = c.rx_cnt.wrapping_add(n as u32);
                // Out of credit: ask the guest to tell us when it has room again.
                if c.peer_credit() == 0 && !c.credit_requested {
                    c.credit_requested = true;
                    let req = self.packet(key, op::CREDIT_REQUEST);
                    self.rxq.push_back(req);
                }
                self.set_interest(key);
                let mut p = self.packet(key, op::RW);
                p.data = data;
                Some(p)
            }
            _ => {
                // EOF: the host sends no more. A full hang-up means it receives no more either.
                c.host_eof = true;
                let flags = if c.host_hup { SHUTDOWN_RCV | SHUTDOWN_SEND } else { SHUTDOWN_SEND };
                self.set_interest(key);
                let mut p = self.packet(key, op::SHUTDOWN);
                p.hdr.flags = flags;
                Some(p)
            }
        }
    }
}

impl VsockBackend for UnixMuxer {
    fn send_pkt(&mut self, pkt: Packet) {
        let h = pkt.hdr;
        if h.dst_cid != HOST_CID || h.type_ != TYPE_STREAM {
            if let Some(r) = pkt.rst_reply() {
                self.rxq.push_back(r);
            }
            return;
        }
        let key = (h.dst_port, h.src_port);
        if let Some(c) = self.conns.get_mut(&key) {
            c.peer_buf_alloc = h.buf_alloc;
            c.peer_fwd_cnt = h.fwd_cnt;
            if c.peer_credit() > 0 {
                c.credit_requested = false;
            }
        } else if h.op != op::REQUEST {
            if let Some(r) = pkt.rst_reply() {
                self.rxq.push_back(r);
            }
            return;
        }
        match h.op {
            op::REQUEST if self.conns.contains_key(&key) => self.reset_conn(key),
            op::REQUEST => {
                self.guest_connect(key);
                if let Some(c) = self.conns.get_mut(&key) {
                    c.peer_buf_alloc = h.buf_alloc;
                    c.peer_fwd_cnt = h.fwd_cnt;
                }
                self.set_interest(key);
            }
            op::RESPONSE => {
                let Some(c) = self.conns.get_mut(&key) else { return };
                if c.state != State::Connecting {
                    return self.reset_conn(key);
                }
                c.state = State::Established;
                c.tx_buf.extend(format!("OK {}\n", key.0).into_bytes());
                // The OK line is ours, not the guest's: keep it out of fwd_cnt.
                c.fwd_cnt = c.fwd_cnt.wrapping_sub(c.tx_buf.len() as u32);
                c.fwd_cnt_told = c.fwd_cnt;
                if c.flush().is_err() {
                    return self.reset_conn(key);
                }
                self.set_interest(key);
            }
            op::RST => self.remove(key),
            op::SHUTDOWN => self.guest_shutdown(key, h.flags),
            op::RW => self.guest_data(key, pkt.data),
            op::CREDIT_REQUEST => self.push(key, op::CREDIT_UPDATE, 0),
            op::CREDIT_UPDATE => self.set_interest(key),
            _ => self.reset_conn(key),
        }
    }

    fn recv_pkt(&mut self, max_payload: usize) -> Option<Packet> {
        if let Some(p) = self.rxq.pop_front() {
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
            let set = ev.event_set();
            if token == LISTENER_TOKEN {
                self.accept();
                continue;
            }
            let fd = token as RawFd;
            if self.pending.contains_key(&fd) {
                self.read_connect(fd);
            } else if let Some(&key) = self.by_fd.get(&fd) {
                self.on_stream_event(key, set);
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
    }
}

impl Drop for UnixMuxer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}
