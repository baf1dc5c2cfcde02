//! Net queue scenarios on mock guest memory, and frames through a real tap in a
//! network namespace the test creates.

use super::{process_tx, NetBackend, NetCounters, RxState, Tap, VNET_HDR_LEN};
use crate::virtio::mock_driver::{with_hdr, FakeTap, Guest};

#[test]
fn tx_frames_go_out_whole_from_one_or_many_descriptors() {
    let mut g = Guest::new();
    let mut tap = FakeTap::default();
    let mut c = NetCounters::default();
    let frame = with_hdr(b"ethernet frame bytes");
    g.send(&[&frame]);
    g.send(&[&frame[..VNET_HDR_LEN], &frame[VNET_HDR_LEN..15], &frame[15..]]);
    g.send(&[&frame[..5]]); // shorter than the header
    assert!(process_tx(&mut g.txq, g.mem, &mut tap, &mut c));
    assert_eq!(tap.outbound, vec![frame.clone(), frame]);
    assert_eq!((c.tx_frames, c.tx_malformed), (2, 1));
    assert_eq!(g.tx_used(), 3, "every chain is returned");
}

#[test]
fn rx_merges_buffers_and_counts_them_in_num_buffers() {
    let mut g = Guest::new();
    let mut tap = FakeTap::default();
    let mut c = NetCounters::default();
    let payload: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
    tap.inbound.push_back(with_hdr(&payload));
    let mut rx = RxState::default();
    rx.mergeable = true;
    g.post_rx(4, 1024);
    assert!(rx.process(&mut g.rxq, g.mem, &mut tap, &mut c));
    let got = g.received();
    assert_eq!(got.len(), 3, "2512 bytes over 1024-byte buffers");
    assert_eq!(u16::from_le_bytes([got[0][10], got[0][11]]), 3, "num_buffers");
    let joined: Vec<u8> = got.concat();
    assert_eq!(&joined[VNET_HDR_LEN..], &payload[..]);
    assert_eq!(c.rx_frames, 1);
}

/// A bad chain among the guest's buffers, then no more room: every chain still comes
/// back exactly once (none lost, none twice) and the frame arrives whole once there is
/// room again.
#[test]
fn a_bad_rx_chain_before_running_out_loses_no_chain_and_no_frame() {
    let mut g = Guest::new();
    let mut tap = FakeTap::default();
    let mut c = NetCounters::default();
    let mut rx = RxState::default();
    rx.mergeable = true;
    let payload: Vec<u8> = (0..2500u32).map(|i| (i * 7) as u8).collect();
    tap.inbound.push_back(with_hdr(&payload));
    g.post_rx(1, 1024); // head 0
    g.post_rx_bad(); // head 1
    rx.process(&mut g.rxq, g.mem, &mut tap, &mut c);
    assert!(rx.pending(), "the frame waits for room");
    let mut heads = g.rx_used_heads();
    heads.sort();
    assert_eq!(heads, [0, 1], "the good chain comes back (empty) with the bad one");
    g.post_rx(3, 1024); // heads 2, 3, 4
    assert!(rx.flush(&mut g.rxq, g.mem, &mut c));
    let got = g.received();
    assert_eq!(got.len(), 3, "the frame over the new buffers, and no chain used twice");
    assert_eq!(&got.concat()[VNET_HDR_LEN..], &payload[..]);
    assert_eq!(c.rx_frames, 1);
}

#[test]
fn rx_waits_for_buffers_and_drops_frames_that_cannot_fit_without_merging() {
    let mut g = Guest::new();
    let mut tap = FakeTap::default();
    let mut c = NetCounters::default();
    let mut rx = RxState::default();
    tap.inbound.push_back(with_hdr(&[1u8; 100]));
    assert!(!rx.process(&mut g.rxq, g.mem, &mut tap, &mut c), "no buffers: nothing used");
    assert!(rx.pending(), "the frame waits");
    g.post_rx(1, 2048);
    assert!(rx.flush(&mut g.rxq, g.mem, &mut c));
    assert_eq!(g.received()[0].len(), VNET_HDR_LEN + 100);
    // Not mergeable: a frame bigger than one buffer is dropped, the buffer returned.
    tap.inbound.push_back(with_hdr(&[2u8; 3000]));
    g.post_rx(1, 2048);
    rx.process(&mut g.rxq, g.mem, &mut tap, &mut c);
    assert_eq!(c.rx_dropped, 1);
    assert_eq!(g.received(), vec![Vec::<u8>::new()]);
}

fn run(cmd: &str) {
    let st = std::process::Command::new("sh").args(["-c", cmd]).status().expect("sh");
    assert!(st.success(), "{cmd}");
}

/// Guest → host: a UDP datagram written as a frame reaches a socket in the namespace.
/// Host → guest: the namespace's ARP request for the guest's address arrives as a frame.
#[test]
fn frames_cross_a_real_tap_both_ways() {
    assert!(nix::unistd::geteuid().is_root(), "needs root for a network namespace (does not skip)");
    let ns = format!("isola-nt-{}", std::process::id());
    run(&format!("ip netns add {ns}"));
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _c = Cleanup(ns.clone());
    let ns2 = ns.clone();
    // Namespaces are per thread: this thread lives in the test's namespace.
    let result = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns2}")).expect("netns");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let mut tap = Tap::open("tap0").expect("tap in the namespace");
        tap.set_offloads(0).expect("offloads");
        run(&format!("ip -n {ns2} addr add 10.99.0.1/24 dev tap0 && ip -n {ns2} link set tap0 up"));
        let sock = std::net::UdpSocket::bind("10.99.0.1:4000").expect("udp in the namespace");
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        // Guest → host: Ethernet + IPv4 + UDP to 10.99.0.1:4000 from 10.99.0.2.
        // (/sys/class/net shows the namespace sysfs was mounted in, not this thread's.)
        let out =
            std::process::Command::new("ip").args(["-n", &ns2, "-o", "link", "show", "tap0"]).output().expect("ip");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mac = text.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("tap0's MAC").to_string();
        let dst: Vec<u8> = mac.split(':').map(|h| u8::from_str_radix(h, 16).expect("hex")).collect();
        let src = [0x02, 0x49, 0x53, 0, 0, 2];
        let payload = b"from the guest";
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let mut ip =
            vec![0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 99, 0, 2, 10, 99, 0, 1];
        let sum = ip.chunks(2).fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut frame = Vec::new();
        frame.extend_from_slice(&dst);
        frame.extend_from_slice(&src);
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&[0x9c, 0x40, 0x0f, 0xa0, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
        frame.extend_from_slice(payload);
        let mut g = Guest::new();
        let mut c = NetCounters::default();
        g.send(&[&with_hdr(&frame)]);
        process_tx(&mut g.txq, g.mem, &mut tap, &mut c);
        let mut buf = [0u8; 64];
        let (n, from) = sock.recv_from(&mut buf).expect("the datagram arrives");
        assert_eq!(&buf[..n], payload);
        assert_eq!(from.to_string(), "10.99.0.2:40000");
        // Host → guest: replying makes the namespace ask who has 10.99.0.2 (ARP).
        let _ = sock.send_to(b"reply", "10.99.0.2:40000");
        let mut rx = RxState::default();
        rx.mergeable = true;
        g.post_rx(8, 2048);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut frames = Vec::new();
        while frames.is_empty() && std::time::Instant::now() < until {
            rx.process(&mut g.rxq, g.mem, &mut tap, &mut c);
            frames = g.received();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        frames
    })
    .join()
    .expect("namespace thread");
    let arp =
        result.iter().find(|f| f.len() >= VNET_HDR_LEN + 42 && f[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14] == [0x08, 0x06]);
    let arp = arp.unwrap_or_else(|| panic!("an ARP request reached the guest side: {result:?}"));
    assert_eq!(&arp[VNET_HDR_LEN + 38..VNET_HDR_LEN + 42], &[10, 99, 0, 2], "asking for the guest's address");
}
