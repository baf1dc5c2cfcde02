//! Scenarios for the vsock device's queues and the unix-socket muxer, driven by a
//! pretend guest on mock guest memory and real unix sockets on the host.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use super::packet::HDR_LEN;
use super::test_utils::{pump, Driver, Layout, ScriptedBackend};
use super::unix::BUF_ALLOC;
use super::{op, Packet, UnixMuxer, VsockBackend, SHUTDOWN_RCV, SHUTDOWN_SEND};

const CID: u64 = 3;
const RXBUF: u32 = 4096 + HDR_LEN as u32;

struct Setup {
    _dir: tempfile::TempDir,
    uds: PathBuf,
    mux: UnixMuxer,
    drv: Driver,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let uds = dir.path().join("v.sock");
    let mux = UnixMuxer::new(CID, &uds).expect("muxer");
    let mut drv = Driver::new(CID);
    drv.post_rx(64, RXBUF);
    Setup { _dir: dir, uds, mux, drv }
}

fn host_listener(s: &Setup, port: u32) -> UnixListener {
    UnixListener::bind(format!("{}_{port}", s.uds.display())).expect("bind host port")
}

fn recv(s: &mut Setup) -> Vec<Packet> {
    s.drv.recv(&mut s.mux).into_iter().map(|p| p.expect("device accepted the rx buffer")).collect()
}

fn ops(ps: &[Packet]) -> Vec<u16> {
    ps.iter().map(|p| p.hdr.op).collect()
}

/// Guest port 1234 connects to host port 5000; returns the host's end.
fn guest_connect(s: &mut Setup, l: &UnixListener, guest_buf_alloc: u32) -> UnixStream {
    let mut req = s.drv.pkt(1234, 5000, op::REQUEST, b"");
    req.hdr.buf_alloc = guest_buf_alloc;
    s.drv.send(&mut s.mux, &req, Layout::Split);
    let got = recv(s);
    assert_eq!(ops(&got), [op::RESPONSE]);
    assert_eq!((got[0].hdr.src_port, got[0].hdr.dst_port, got[0].hdr.dst_cid), (5000, 1234, CID));
    let (host, _) = l.accept().expect("accept");
    host.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    host
}

/// EOF, or a reset when we closed with its bytes unread; never a timeout.
fn assert_closed(s: &mut UnixStream) {
    match s.read(&mut [0u8; 8]) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the socket closed, got {other:?}"),
    }
}

fn credit_update(s: &Setup, buf_alloc: u32, fwd_cnt: u32) -> Packet {
    let mut p = s.drv.pkt(1234, 5000, op::CREDIT_UPDATE, b"");
    p.hdr.buf_alloc = buf_alloc;
    p.hdr.fwd_cnt = fwd_cnt;
    p
}

#[test]
fn guest_connects_out_and_data_flows_both_ways_in_both_layouts() {
    let mut s = setup();
    let l = host_listener(&s, 5000);
    let mut host = guest_connect(&mut s, &l, 65536);
    let a = s.drv.pkt(1234, 5000, op::RW, b"hello ");
    let b = s.drv.pkt(1234, 5000, op::RW, b"world");
    s.drv.send(&mut s.mux, &a, Layout::Split);
    s.drv.send(&mut s.mux, &b, Layout::Single);
    let mut buf = [0u8; 11];
    host.read_exact(&mut buf).expect("host reads");
    assert_eq!(&buf, b"hello world");

    host.write_all(b"pong").expect("host writes");
    pump(&mut s.mux);
    let got = recv(&mut s);
    assert_eq!(ops(&got), [op::RW]);
    assert_eq!(got[0].data, b"pong");
    assert_eq!(got[0].hdr.buf_alloc, BUF_ALLOC);
    assert_eq!(got[0].hdr.fwd_cnt, 11, "the host took 11 bytes");
    assert_eq!(s.drv.counters.malformed, 0);
}

#[test]
fn host_connect_line_reaches_the_guest_and_ok_comes_back_without_eating_data() {
    let mut s = setup();
    let mut c = UnixStream::connect(&s.uds).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    c.write_all(b"CONNECT 1024\nearly").expect("write");
    pump(&mut s.mux);
    let got = recv(&mut s);
    assert_eq!(ops(&got), [op::REQUEST]);
    let (host_port, guest_port) = (got[0].hdr.src_port, got[0].hdr.dst_port);
    assert_eq!(guest_port, 1024);
    assert!(host_port >= 1 << 30);
    s.drv.send(&mut s.mux, &s.drv.pkt(1024, host_port, op::RESPONSE, b""), Layout::Split);
    let mut line = vec![0u8; format!("OK {host_port}\n").len()];
    c.read_exact(&mut line).expect("OK line");
    assert_eq!(String::from_utf8_lossy(&line), format!("OK {host_port}\n"));
    pump(&mut s.mux);
    let got = recv(&mut s);
    assert_eq!(ops(&got), [op::RW]);
    assert_eq!(got[0].data, b"early", "bytes after the CONNECT line belong to the stream");
    assert_eq!(got[0].hdr.fwd_cnt, 0, "the OK line is not guest data");
}

#[test]
fn bad_connect_lines_are_dropped_and_a_refused_connect_closes_the_client() {
    let mut s = setup();
    let mut bad = UnixStream::connect(&s.uds).expect("connect");
    bad.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    bad.write_all(b"HELLO there\n").expect("write");
    let mut silent = UnixStream::connect(&s.uds).expect("connect");
    silent.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    silent.write_all(&[b'x'; 40]).expect("write");
    pump(&mut s.mux);
    assert!(!s.mux.has_pending_rx());
    assert_closed(&mut bad);
    assert_closed(&mut silent);

    let mut c = UnixStream::connect(&s.uds).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    c.write_all(b"CONNECT 77\n").expect("write");
    pump(&mut s.mux);
    let got = recv(&mut s);
    assert_eq!(ops(&got), [op::REQUEST]);
    // Nothing listens on guest port 77: the guest answers RST.
    s.drv.send(&mut s.mux, &s.drv.pkt(77, got[0].hdr.src_port, op::RST, b""), Layout::Split);
    assert_closed(&mut c);
    assert_eq!(s.mux.connection_count(), 0);
}

#[test]
fn host_to_guest_data_stops_at_the_guests_credit_and_resumes_on_update() {
    let mut s = setup();
    let l = host_listener(&s, 5000);
    let mut host = guest_connect(&mut s, &l, 100);
    host.write_all(&[7u8; 300]).expect("write");
    pump(&mut s.mux);
    let got = recv(&mut s);
    assert_eq!(ops(&got), [op::RW, op::CREDIT_REQUEST], "out of credit: ask");
    assert_eq!(got[0].data.len(), 100);
    pump(&mut s.mux);
    assert!(recv(&mut s).is_empty(), "nothing more without credit");
    let update = credit_update(&s, 100, 100);
    s.drv.send(&mut s.mux, &update, Layout::Split);
    pump(&mut s.mux);
    let got = recv(&mut s);
    assert_eq!(ops(&got), [op::RW, op::CREDIT_REQUEST]);
    assert_eq!(got[0].data.len(), 100);
}

#[test]
fn forwarding_a_quarter_of_the_buffer_sends_a_credit_update() {
    let mut s = setup();
    let l = host_listener(&s, 5000);
    let mut host = guest_connect(&mut s, &l, 65536);
    let chunk = vec![1u8; 32 * 1024];
    let reader = std::thread::spawn(move || {
        let mut all = vec![0u8; 96 * 1024];
        host.read_exact(&mut all).map(|_| all.len())
    });
    for _ in 0..3 {
        let p = s.drv.pkt(1234, 5000, op::RW, &chunk);
        s.drv.send(&mut s.mux, &p, Layout::Single);
    }
    assert_eq!(reader.join().expect("reader").expect("read"), 96 * 1024);
    let got = recv(&mut s);
    let update = got.iter().find(|p| p.hdr.op == op::CREDIT_UPDATE).expect("a credit update");
    assert!(update.hdr.fwd_cnt >= BUF_ALLOC / 4, "fwd_cnt {}", update.hdr.fwd_cnt);
    // A credit request is always answered.
    s.drv.send(&mut s.mux, &s.drv.pkt(1234, 5000, op::CREDIT_REQUEST, b""), Layout::Split);
    let got = recv(&mut s);
    assert_eq!(ops(&got), [op::CREDIT_UPDATE]);
    assert_eq!(got[0].hdr.fwd_cnt, 96 * 1024);
}

#[test]
fn a_guest_that_overruns_its_credit_is_reset() {
    let mut s = setup();
    let l = host_listener(&s, 5000);
    let _host = guest_connect(&mut s, &l, 65536);
    let chunk = vec![2u8; 64 * 1024];
    // The host never reads, so its socket fills and our buffer with it.
    for _ in 0..16 {
        let p = s.drv.pkt(1234, 5000, op::RW, &chunk);
        s.drv.send(&mut s.mux, &p, Layout::Single);
        if s.mux.connection_count() == 0 {
            break;
        }
    }
    assert_eq!(s.mux.connection_count(), 0);
    let got = recv(&mut s);
    assert!(ops(&got).contains(&op::RST), "got {:?}", ops(&got));
}

#[test]
fn guest_close_gets_rst_and_the_host_sees_eof() {
    let mut s = setup();
    let l = host_listener(&s, 5000);
    let mut host = guest_connect(&mut s, &l, 65536);
    let mut sd = s.drv.pkt(1234, 5000, op::SHUTDOWN, b"");
    sd.hdr.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    s.drv.send(&mut s.mux, &sd, Layout::Split);
    assert_eq!(ops(&recv(&mut s)), [op::RST]);
    assert_eq!(host.read(&mut [0u8; 4]).expect("eof"), 0);
    assert_eq!(s.mux.connection_count(), 0);
}

#[test]
fn guest_half_close_reaches_the_host_as_eof_while_it_can_still_receive() {
    let mut s = setup();
    let l = host_listener(&s, 5000);
    let mut host = guest_connect(&mut s, &l, 65536);
    s.drv.send(&mut s.mux, &s.drv.pkt(1234, 5000, op::RW, b"last"), Layout::Split);
    let mut sd = s.drv.pkt(1234, 5000, op::SHUTDOWN, b"");
    sd.hdr.flags = SHUTDOWN_SEND;
    s.drv.send(&mut s.mux, &sd, Layout::Split);
    let mut all = Vec::new();
    host.read_to_end(&mut all).expect("read to eof");
    assert_eq!(all, b"last");
    host.write_all(b"reply").expect("write after guest half-close");
    pump(&mut s.mux);
    let got = recv(&mut s);
    assert_eq!(ops(&got), [op::RW]);
    assert_eq!(got[0].data, b"reply");
}

#[test]
fn host_close_sends_shutdown_and_the_guests_rst_ends_the_connection() {
    let mut s = setup();
    let l = host_listener(&s, 5000);
    let host = guest_connect(&mut s, &l, 65536);
    drop(host);
    pump(&mut s.mux);
    let got = recv(&mut s);
    assert_eq!(ops(&got), [op::SHUTDOWN]);
    assert_eq!(got[0].hdr.flags, SHUTDOWN_RCV | SHUTDOWN_SEND);
    assert_eq!(s.mux.connection_count(), 1);
    s.drv.send(&mut s.mux, &s.drv.pkt(1234, 5000, op::RST, b""), Layout::Split);
    assert_eq!(s.mux.connection_count(), 0);
    assert!(recv(&mut s).is_empty(), "no answer to an RST");
}

#[test]
fn strangers_get_rst_unknown_ports_refuse_and_duplicates_reset() {
    let mut s = setup();
    // Data for a connection that does not exist.
    s.drv.send(&mut s.mux, &s.drv.pkt(1, 2, op::RW, b"x"), Layout::Split);
    // A connect to a host port nobody listens on.
    s.drv.send(&mut s.mux, &s.drv.pkt(1, 6000, op::REQUEST, b""), Layout::Split);
    // Wrong destination CID and wrong socket type.
    let mut other = s.drv.pkt(1, 6000, op::REQUEST, b"");
    other.hdr.dst_cid = 7;
    s.drv.send(&mut s.mux, &other, Layout::Split);
    let mut dgram = s.drv.pkt(1, 6000, op::REQUEST, b"");
    dgram.hdr.type_ = 2;
    s.drv.send(&mut s.mux, &dgram, Layout::Split);
    let got = recv(&mut s);
    // The refused connect and the datagram get the same RST: one is queued, not two.
    assert_eq!(ops(&got), [op::RST, op::RST, op::RST]);
    assert_eq!((got[0].hdr.src_port, got[0].hdr.dst_port), (2, 1));

    let l = host_listener(&s, 5000);
    let _host = guest_connect(&mut s, &l, 65536);
    s.drv.send(&mut s.mux, &s.drv.pkt(1234, 5000, op::REQUEST, b""), Layout::Split);
    assert_eq!(ops(&recv(&mut s)), [op::RST]);
    assert_eq!(s.mux.connection_count(), 0);
}

#[test]
fn malformed_tx_chains_are_counted_and_skipped_without_stopping_the_queue() {
    let mut s = setup();
    let mut b = ScriptedBackend::default();
    let good = s.drv.pkt(1, 2, op::RW, b"ok");
    let hdr = good.hdr.to_bytes();
    s.drv.queue_tx_raw(&[(&hdr[..10], false)]); // short header
    let mut claims_more = good.hdr;
    claims_more.len = 100;
    s.drv.queue_tx_raw(&[(&claims_more.to_bytes(), false), (b"ok", false)]); // truncated
    let mut huge = good.hdr;
    huge.len = 1 << 20;
    s.drv.queue_tx_raw(&[(&huge.to_bytes(), false)]); // too large
    let mut spoofed = good.hdr;
    spoofed.src_cid = 99;
    s.drv.queue_tx_raw(&[(&spoofed.to_bytes(), false), (b"ok", false)]); // wrong cid
    s.drv.queue_tx_raw(&[(&hdr, true), (b"ok", true)]); // device-writable only
    s.drv.queue_tx_raw(&[(&hdr, false), (b"ok", false)]);
    assert!(s.drv.process_tx(&mut b));
    assert_eq!(s.drv.counters.malformed, 5);
    assert_eq!(b.from_guest, vec![good]);
    assert_eq!(s.drv.tx_used(), 6, "every chain goes back to the guest");
}

#[test]
fn rx_buffers_too_small_for_a_header_are_rejected() {
    let mut drv = Driver::new(CID);
    let mut b = ScriptedBackend::default();
    b.to_guest.push_back(Packet::to_guest(CID, 1, 2, op::RESPONSE));
    drv.post_rx(1, 20);
    drv.post_rx(1, RXBUF);
    let got = drv.recv(&mut b);
    assert_eq!(got.len(), 2);
    assert!(got[0].is_none());
    assert_eq!(got[1].as_ref().map(|p| p.hdr.op), Some(op::RESPONSE));
    assert_eq!(drv.counters.malformed, 1);
}

#[test]
fn payloads_are_cut_to_the_rx_buffer_and_the_rest_waits_for_the_next() {
    let mut s = setup();
    let l = host_listener(&s, 5000);
    let mut host = guest_connect(&mut s, &l, 65536);
    host.write_all(&[9u8; 10000]).expect("write");
    let mut total = 0;
    for _ in 0..10 {
        pump(&mut s.mux);
        for p in recv(&mut s) {
            assert!(p.data.len() <= 4096);
            total += p.data.len();
        }
        if total == 10000 {
            break;
        }
    }
    assert_eq!(total, 10000);
}

#[test]
fn without_rx_buffers_packets_wait_until_the_guest_posts_some() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut mux = UnixMuxer::new(CID, &dir.path().join("v.sock")).expect("muxer");
    let mut drv = Driver::new(CID);
    drv.send(&mut mux, &drv.pkt(1, 6000, op::REQUEST, b""), Layout::Split);
    assert!(drv.recv(&mut mux).is_empty(), "queue full: nothing delivered");
    assert!(mux.has_pending_rx());
    drv.post_rx(1, RXBUF);
    let got = drv.recv(&mut mux);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_ref().map(|p| p.hdr.op), Some(op::RST));
}

#[test]
fn a_backend_with_nothing_after_all_leaves_the_buffer_for_later() {
    let mut drv = Driver::new(CID);
    let mut b = ScriptedBackend { phantom_pending: 1, ..Default::default() };
    b.to_guest.push_back(Packet::to_guest(CID, 1, 2, op::RESPONSE));
    drv.post_rx(1, RXBUF);
    assert!(drv.recv(&mut b).is_empty());
    let got = drv.recv(&mut b);
    assert_eq!(got.len(), 1, "the same buffer was used on the second pass");
}

#[test]
fn many_connections_keep_their_data_apart() {
    let mut s = setup();
    let l = host_listener(&s, 5000);
    let mut hosts = Vec::new();
    for port in 0..20u32 {
        s.drv.send(&mut s.mux, &s.drv.pkt(2000 + port, 5000, op::REQUEST, b""), Layout::Split);
        assert_eq!(ops(&recv(&mut s)), [op::RESPONSE]);
        let (h, _) = l.accept().expect("accept");
        h.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        hosts.push(h);
    }
    for port in (0..20u32).rev() {
        let p = s.drv.pkt(2000 + port, 5000, op::RW, format!("conn {port:02}").as_bytes());
        s.drv.send(&mut s.mux, &p, Layout::Single);
    }
    for (port, h) in hosts.iter_mut().enumerate() {
        let mut buf = [0u8; 7];
        h.read_exact(&mut buf).expect("read");
        assert_eq!(String::from_utf8_lossy(&buf), format!("conn {port:02}"));
    }
    assert_eq!(s.mux.connection_count(), 20);
    s.mux.reset();
    assert_eq!(s.mux.connection_count(), 0);
}

/// A guest that floods stray packets and credit requests while posting no RX buffers
/// cannot grow the muxer: the control queue stays at its bound, one pending packet per
/// connection and op, and the rest is counted as dropped.
#[test]
fn floods_of_stray_packets_and_credit_requests_keep_the_control_queue_bounded() {
    use super::unix::MAX_CONTROL_QUEUE;
    let rss_kib = || {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse::<i64>().ok())
    };
    let before = rss_kib().expect("VmRSS");
    let mut s = setup();
    let l = host_listener(&s, 5000);
    let _host = guest_connect(&mut s, &l, BUF_ALLOC);
    for i in 0..1_000_000u32 {
        // Unknown connections (each a different key) and a wrong CID.
        let mut p = s.drv.pkt(10_000 + (i % 50_000), 7000 + i / 50_000, op::RW, b"x");
        if i % 2 == 0 {
            p.hdr.dst_cid = 99;
        }
        s.mux.send_pkt(p);
    }
    let (queued, dropped) = s.mux.control_queue();
    assert_eq!(queued, MAX_CONTROL_QUEUE);
    assert_eq!(dropped, 1_000_000 - MAX_CONTROL_QUEUE as u64);
    // Once the guest takes packets again, the queue drains and a live connection's
    // credit request gets its one answer however often it is repeated.
    while s.mux.recv_pkt(4096).is_some() {}
    for _ in 0..1_000_000 {
        s.mux.send_pkt(credit_update(&s, BUF_ALLOC, 0));
        let mut req = s.drv.pkt(1234, 5000, op::CREDIT_REQUEST, b"");
        req.hdr.buf_alloc = BUF_ALLOC;
        s.mux.send_pkt(req);
    }
    assert_eq!(s.mux.control_queue().0, 1, "one CREDIT_UPDATE pending for the connection");
    let got = recv(&mut s);
    assert_eq!(ops(&got), [op::CREDIT_UPDATE]);
    assert_eq!(s.mux.connection_count(), 1, "the live connection survived the flood");
    // Unbounded, the first flood alone queued ~70 MiB of RST packets (137 MiB for 2·10⁶).
    // Tests beside this one share the process, so the bound is loose.
    let grown = rss_kib().expect("VmRSS") - before;
    eprintln!("RSS grew by {grown} KiB over 2·10⁶ flood packets");
    assert!(grown < 32 << 10, "the muxer grew by {grown} KiB");
}

#[test]
fn a_restored_device_tells_the_guest_transport_reset_once_it_posts_an_event_buffer() {
    use super::queues::{push_event, EVENT_TRANSPORT_RESET};
    // The mock guest's RX queue stands in for the event queue: same shape.
    let mut g = crate::virtio::mock_driver::Guest::new();
    assert_eq!(push_event(&mut g.rxq, g.mem, EVENT_TRANSPORT_RESET), None, "no buffer yet: kept pending");
    g.post_rx(1, 8);
    assert_eq!(push_event(&mut g.rxq, g.mem, EVENT_TRANSPORT_RESET), Some(true));
    assert_eq!(g.received(), vec![vec![0u8, 0, 0, 0]], "one le32 event id 0");
    // A buffer too small for the event is handed back empty, not overrun.
    g.post_rx(1, 2);
    assert_eq!(push_event(&mut g.rxq, g.mem, EVENT_TRANSPORT_RESET), Some(true));
    assert_eq!(g.received(), vec![Vec::<u8>::new()]);
}
