//! One vsock stream between a guest socket and a host unix socket: its state, credit
//! accounting both ways and shutdown. Each method applies one event and returns what
//! the muxer must do about it; the connection never reaches other connections.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;

use vmm_sys_util::epoll::EventSet;

use super::handshake;
use crate::virtio::vsock::{op, MAX_PAYLOAD, SHUTDOWN_RCV, SHUTDOWN_SEND};

/// Bytes the guest may have in flight towards one host socket (our receive buffer).
pub const BUF_ALLOC: u32 = 256 * 1024;
/// Tell the guest about freed buffer space once this much has been forwarded.
const CREDIT_UPDATE_THRESHOLD: u32 = BUF_ALLOC / 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// We sent REQUEST for a host client and wait for the guest's RESPONSE.
    Connecting,
    Established,
}

/// What the muxer must do after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Queue a control packet (op, flags) for the guest.
    Control(u16, u32),
    /// RST to the guest and close the host socket.
    Reset,
}

/// What a read of the host socket produced for the guest.
#[derive(Debug, PartialEq, Eq)]
pub enum HostRead {
    /// Nothing now (would block, or out of credit and already asked).
    Nothing,
    /// Ask the guest for credit first.
    CreditRequest,
    /// Data; `then_credit_request` when it used up the guest's credit.
    Data { data: Vec<u8>, then_credit_request: bool },
    /// The host sends no more (flags for the SHUTDOWN packet).
    Shutdown(u32),
}

pub struct Conn {
    pub stream: UnixStream,
    pub state: State,
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
    /// What the muxer's epoll watches for on this socket.
    pub interest: EventSet,
}

impl Conn {
    pub fn new(stream: UnixStream, state: State) -> Self {
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

    /// The credit fields of a packet to the guest; the guest now knows our fwd_cnt.
    pub fn credit_fields(&mut self) -> (u32, u32) {
        self.fwd_cnt_told = self.fwd_cnt;
        (BUF_ALLOC, self.fwd_cnt)
    }

    /// The guest's view of its receive buffer, from any packet it sent.
    pub fn peer_credit_update(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = fwd_cnt;
        if self.peer_credit() > 0 {
            self.credit_requested = false;
        }
    }

    /// How many more bytes the guest can take.
    fn peer_credit(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// The socket events worth waking up for now.
    pub fn wanted(&self) -> EventSet {
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

    /// The guest accepted our REQUEST: the host client gets its `OK` line.
    pub fn guest_response(&mut self, host_port: u32) -> Step {
        if self.state != State::Connecting {
            return Step::Reset;
        }
        self.state = State::Established;
        let ok = handshake::ok_line(host_port);
        // The OK line is ours, not the guest's: keep it out of fwd_cnt.
        self.fwd_cnt = self.fwd_cnt.wrapping_sub(ok.len() as u32);
        self.fwd_cnt_told = self.fwd_cnt;
        self.tx_buf.extend(ok);
        if self.flush().is_err() {
            return Step::Reset;
        }
        Step::Nothing
    }

    /// Guest data for the host socket.
    pub fn guest_data(&mut self, data: Vec<u8>, guest_port: u32) -> Step {
        if self.state != State::Established || self.peer_shut_send {
            return Step::Reset;
        }
        if self.tx_buf.len() + data.len() > BUF_ALLOC as usize {
            log::warn!("vsock: guest port {guest_port} overran its credit; resetting");
            return Step::Reset;
        }
        self.tx_buf.extend(data);
        if self.flush().is_err() {
            return Step::Reset;
        }
        self.after_forward()
    }

    /// Credit update when the guest may be waiting for room; EOF towards the host once
    /// the guest is done sending and everything is written.
    fn after_forward(&mut self) -> Step {
        if self.peer_shut_send && self.tx_buf.is_empty() {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        if self.fwd_cnt.wrapping_sub(self.fwd_cnt_told) >= CREDIT_UPDATE_THRESHOLD {
            return Step::Control(op::CREDIT_UPDATE, 0);
        }
        Step::Nothing
    }

    pub fn guest_shutdown(&mut self, flags: u32) -> Step {
        self.peer_shut_rcv |= flags & SHUTDOWN_RCV != 0;
        self.peer_shut_send |= flags & SHUTDOWN_SEND != 0;
        if self.peer_shut_send && (self.peer_shut_rcv || self.host_eof) {
            // The guest closed: a last try at pending bytes, then the RST it waits for.
            let _ = self.flush();
            return Step::Reset;
        }
        self.after_forward()
    }

    /// The host socket's readiness. Returns what to do and whether a read is now due.
    pub fn socket_event(&mut self, ev: EventSet) -> (Step, bool) {
        let mut step = Step::Nothing;
        if ev.contains(EventSet::OUT) || ev.intersects(EventSet::HANG_UP | EventSet::ERROR) && !self.tx_buf.is_empty() {
            if self.flush().is_err() {
                return (Step::Reset, false);
            }
            step = self.after_forward();
        }
        self.host_hup |= ev.intersects(EventSet::HANG_UP | EventSet::ERROR);
        let readable = ev.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::READ_HANG_UP | EventSet::ERROR);
        let read = readable && !self.rx_queued && self.state == State::Established && !self.host_eof;
        self.rx_queued |= read;
        (step, read)
    }

    /// Reads from the host socket, at most `max` bytes and what the guest has room for.
    pub fn read_host(&mut self, max: usize) -> HostRead {
        self.rx_queued = false;
        let credit = self.peer_credit() as usize;
        if credit == 0 {
            if self.credit_requested {
                return HostRead::Nothing;
            }
            self.credit_requested = true;
            return HostRead::CreditRequest;
        }
        let mut data = vec![0u8; max.min(credit).min(MAX_PAYLOAD)];
        match self.stream.read(&mut data) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => HostRead::Nothing,
            Ok(n) if n > 0 => {
                data.truncate(n);
                self.rx_cnt = self.rx_cnt.wrapping_add(n as u32);
                // Out of credit: ask the guest to tell us when it has room again.
                let then_credit_request = self.peer_credit() == 0 && !self.credit_requested;
                self.credit_requested |= then_credit_request;
                HostRead::Data { data, then_credit_request }
            }
            _ => {
                // EOF: the host sends no more. A full hang-up means it receives no more either.
                self.host_eof = true;
                HostRead::Shutdown(if self.host_hup { SHUTDOWN_RCV | SHUTDOWN_SEND } else { SHUTDOWN_SEND })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(state: State) -> (Conn, UnixStream) {
        let (a, b) = UnixStream::pair().expect("pair");
        a.set_nonblocking(true).expect("nonblocking");
        (Conn::new(a, state), b)
    }

    #[test]
    fn the_ok_line_is_not_counted_as_guest_bytes() {
        let (mut c, mut host) = pair(State::Connecting);
        assert_eq!(c.guest_response(1 << 30), Step::Nothing);
        let mut line = [0u8; 14];
        host.read_exact(&mut line).expect("ok line");
        assert_eq!(&line, b"OK 1073741824\n");
        assert_eq!(c.credit_fields(), (BUF_ALLOC, 0));
        assert_eq!(c.guest_response(1), Step::Reset, "a second RESPONSE is a protocol error");
    }

    #[test]
    fn credit_is_requested_once_and_data_past_credit_resets() {
        let (mut c, mut host) = pair(State::Established);
        assert_eq!(c.read_host(1024), HostRead::CreditRequest, "the guest has given no credit yet");
        assert_eq!(c.read_host(1024), HostRead::Nothing, "asked once");
        c.peer_credit_update(4, 0);
        host.write_all(b"abcdef").expect("write");
        assert_eq!(c.read_host(1024), HostRead::Data { data: b"abcd".to_vec(), then_credit_request: true });
        assert_eq!(c.guest_data(vec![0; BUF_ALLOC as usize + 1], 5), Step::Reset);
    }

    #[test]
    fn a_full_guest_close_resets_and_host_eof_becomes_shutdown() {
        let (mut c, host) = pair(State::Established);
        c.peer_credit_update(BUF_ALLOC, 0);
        assert_eq!(c.guest_shutdown(SHUTDOWN_SEND), Step::Nothing, "half-close keeps the stream");
        drop(host);
        assert_eq!(c.read_host(1024), HostRead::Shutdown(SHUTDOWN_SEND));
        assert_eq!(c.guest_shutdown(SHUTDOWN_RCV), Step::Reset);
    }
}
