//! The frontend against a real virtiofsd, with the test playing the guest's FUSE
//! driver: requests written into memfd guest memory, replies read back.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::{Fs, NUM_QUEUES};
use crate::memory::{create_guest_memory, Backing};
use crate::virtio::{ActivateContext, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};

const FUSE_LOOKUP: u32 = 1;
const FUSE_OPEN: u32 = 14;
const FUSE_READ: u32 = 15;
const FUSE_INIT: u32 = 26;
const REQ_QUEUE: usize = 1;

fn virtiofsd() -> PathBuf {
    let candidates = [
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/isola/tools/bin/virtiofsd")),
        Some(PathBuf::from("/usr/local/bin/virtiofsd")),
        Some(PathBuf::from("/usr/libexec/virtiofsd")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .expect("virtiofsd (scripts/setup.sh installs it; this test does not skip)")
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_header(len: usize, opcode: u32, unique: u64, nodeid: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(40);
    h.extend_from_slice(&(len as u32).to_le_bytes());
    h.extend_from_slice(&opcode.to_le_bytes());
    h.extend_from_slice(&unique.to_le_bytes());
    h.extend_from_slice(&nodeid.to_le_bytes());
    h.extend_from_slice(&[0u8; 16]); // uid, gid, pid, total_extlen, padding
    h
}

struct Driver {
    mem: &'static GuestMemoryMmap,
    q: MockSplitQueue<'static, GuestMemoryMmap>,
    kick: EventFd,
    next_desc: u16,
    seen: u16,
    next_buf: u64,
    unique: u64,
}

impl Driver {
    /// Sends one request (header built here + `body`) and returns the reply (out header + data).
    fn call(&mut self, opcode: u32, nodeid: u64, body: &[u8], reply_len: u32) -> (i32, Vec<u8>) {
        self.unique += 1;
        let mut req = in_header(40 + body.len(), opcode, self.unique, nodeid);
        req.extend_from_slice(body);
        let (in_addr, out_addr) = (self.next_buf, self.next_buf + 0x1_0000);
        self.next_buf += 0x2_0000;
        self.mem.write_slice(&req, GuestAddress(in_addr)).expect("write request");
        let d = self.next_desc;
        let descs = [
            RawDescriptor::from(SplitDescriptor::new(in_addr, req.len() as u32, 1, d + 1)),
            RawDescriptor::from(SplitDescriptor::new(out_addr, reply_len, 2, 0)),
        ];
        self.q.add_desc_chains(&descs, d).expect("chain");
        self.next_desc += 2;
        self.kick.write(1).expect("kick");
        let until = Instant::now() + Duration::from_secs(10);
        while self.q.used().idx().load() == self.seen {
            assert!(Instant::now() < until, "virtiofsd did not answer opcode {opcode}");
            std::thread::sleep(Duration::from_millis(1));
        }
        let e = self.q.used().ring().ref_at(usize::from(self.seen)).expect("used").load();
        self.seen += 1;
        let mut out = vec![0u8; e.len() as usize];
        self.mem.read_slice(&mut out, GuestAddress(out_addr)).expect("read reply");
        assert!(out.len() >= 16, "reply header");
        let error = i32::from_le_bytes(out[4..8].try_into().expect("4"));
        assert_eq!(u64::from_le_bytes(out[8..16].try_into().expect("8")), self.unique, "reply matches request");
        (error, out[16..].to_vec())
    }
}

#[test]
fn fuse_init_lookup_open_and_read_through_a_real_virtiofsd() {
    let dir = tempfile::tempdir().expect("tmp");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("shared");
    std::fs::write(shared.join("hello.txt"), "hello from the host\n").expect("file");
    let (_daemon, sock) = start_daemon(dir.path(), &shared, "fs");
    let mut fs = Fs::connect("isola", &sock).expect("vhost-user handshake");
    assert_ne!(fs.features() & VIRTIO_F_VERSION_1, 0, "virtiofsd offers a modern device");
    let mut tag = [0u8; 6];
    fs.read_config(0, &mut tag);
    assert_eq!(&tag[..5], b"isola");

    let mem: &'static GuestMemoryMmap =
        Box::leak(Box::new(create_guest_memory(32 << 20, Backing::Shared).expect("memfd")));
    let hiprio = MockSplitQueue::create(mem, GuestAddress(0), 16);
    let req = MockSplitQueue::create(mem, GuestAddress(0x4000), 64);
    let queues = vec![hiprio.create_queue().expect("q0"), req.create_queue().expect("q1")];
    let kicks: Vec<EventFd> = (0..NUM_QUEUES).map(|_| EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")).collect();
    let kick = kicks[REQ_QUEUE].try_clone().expect("kick");
    let irq = EventFd::new(libc::EFD_NONBLOCK).expect("irq");
    let interrupt = Arc::new(Interrupt::new(irq.try_clone().expect("irq")));
    fs.activate(ActivateContext {
        mem: mem.clone(),
        queues,
        queue_events: kicks,
        interrupt: interrupt.clone(),
        acked_features: fs.features(),
    })
    .expect("activate: memory table and vrings handed over");
    let mut d = Driver { mem, q: req, kick, next_desc: 0, seen: 0, next_buf: 0x10_0000, unique: 0 };

    let (err, out) = d.call(FUSE_INIT, 0, &init_body(), 16 + 64);
    assert_eq!(err, 0, "FUSE_INIT");
    assert_eq!(u32::from_le_bytes(out[0..4].try_into().expect("major")), 7);
    // The used ring can be seen before the forwarder thread has handled virtiofsd's
    // call: wait for it (bounded) rather than race it.
    let until = Instant::now() + Duration::from_secs(5);
    while interrupt.status() & crate::virtio::INT_VRING == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(interrupt.status() & crate::virtio::INT_VRING != 0, "virtiofsd's call became a guest interrupt");
    assert!(irq.read().is_ok_and(|n| n >= 1), "and raised the interrupt line");

    let (err, out) = d.call(FUSE_LOOKUP, 1, b"hello.txt\0", 16 + 128);
    assert_eq!(err, 0, "LOOKUP hello.txt");
    let nodeid = u64::from_le_bytes(out[0..8].try_into().expect("nodeid"));
    let size = u64::from_le_bytes(out[40 + 8..40 + 16].try_into().expect("size"));
    assert_eq!(size, 20);
    let (err, _) = d.call(FUSE_LOOKUP, 1, b"missing\0", 16 + 128);
    assert_eq!(err, -libc::ENOENT, "a missing name is ENOENT");

    let mut open = Vec::new();
    open.extend_from_slice(&(libc::O_RDONLY as u32).to_le_bytes());
    open.extend_from_slice(&0u32.to_le_bytes());
    let (err, out) = d.call(FUSE_OPEN, nodeid, &open, 16 + 16);
    assert_eq!(err, 0, "OPEN");
    let fh = u64::from_le_bytes(out[0..8].try_into().expect("fh"));
    let mut read = Vec::new();
    read.extend_from_slice(&fh.to_le_bytes());
    read.extend_from_slice(&0u64.to_le_bytes());
    read.extend_from_slice(&4096u32.to_le_bytes());
    read.resize(40, 0);
    let (err, data) = d.call(FUSE_READ, nodeid, &read, 16 + 4096);
    assert_eq!(err, 0, "READ");
    assert_eq!(String::from_utf8_lossy(&data), "hello from the host\n");
    fs.reset();
}

/// A virtiofsd sharing `shared`, and its socket once it is there.
fn start_daemon(dir: &std::path::Path, shared: &std::path::Path, name: &str) -> (Daemon, PathBuf) {
    let sock = dir.join(format!("{name}.sock"));
    let daemon = Daemon(
        Command::new(virtiofsd())
            .arg("--socket-path")
            .arg(&sock)
            .arg("--shared-dir")
            .arg(shared)
            .args(["--sandbox", "none", "--cache", "never", "--log-level", "error"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start virtiofsd"),
    );
    let until = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < until, "virtiofsd made no socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    (daemon, sock)
}

fn init_body() -> Vec<u8> {
    let mut init = Vec::new();
    for v in [7u32, 31, 0, 0, 0] {
        init.extend_from_slice(&v.to_le_bytes());
    }
    init.resize(64, 0);
    init
}

#[test]
fn an_unused_fs_device_moves_to_a_new_virtiofsd_and_a_used_one_refuses_to_be_snapshotted() {
    let dir = tempfile::tempdir().expect("tmp");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("shared");
    std::fs::write(shared.join("hello.txt"), "hello from the host\n").expect("file");
    let mem: &'static GuestMemoryMmap =
        Box::leak(Box::new(create_guest_memory(32 << 20, Backing::Shared).expect("memfd")));
    let hiprio = MockSplitQueue::create(mem, GuestAddress(0), 16);
    let req = MockSplitQueue::create(mem, GuestAddress(0x4000), 64);
    let irq = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("irq")));
    let kicks =
        || -> Vec<EventFd> { (0..NUM_QUEUES).map(|_| EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")).collect() };
    // The template's device: driver up, nothing mounted yet.
    let (_a, sock_a) = start_daemon(dir.path(), &shared, "a");
    let mut template = Fs::connect("isola", &sock_a).expect("handshake a");
    let features = template.features();
    let queues = vec![hiprio.create_queue().expect("q0"), req.create_queue().expect("q1")];
    template
        .activate(ActivateContext {
            mem: mem.clone(),
            queues,
            queue_events: kicks(),
            interrupt: irq.clone(),
            acked_features: features,
        })
        .expect("activate");
    let states = template.quiesce().expect("an unused device can be snapshotted").expect("it runs");
    assert!(states.iter().all(|q| q.next_avail == 0 && q.ready), "{states:?}");
    // The clone's device: a new virtiofsd gets the memory table and the rings there.
    let (_b, sock_b) = start_daemon(dir.path(), &shared, "b");
    let mut clone = Fs::connect("isola", &sock_b).expect("handshake b");
    let queue_events = kicks();
    let kick = queue_events[REQ_QUEUE].try_clone().expect("kick");
    let queues = states.iter().map(|q| virtio_queue::Queue::try_from(*q).expect("queue")).collect();
    clone
        .resume(
            ActivateContext {
                mem: mem.clone(),
                queues,
                queue_events,
                interrupt: irq.clone(),
                acked_features: features,
            },
            true,
        )
        .expect("restored onto virtiofsd b");
    let mut d = Driver { mem, q: req, kick, next_desc: 0, seen: 0, next_buf: 0x10_0000, unique: 0 };
    let (err, _) = d.call(FUSE_INIT, 0, &init_body(), 16 + 64);
    assert_eq!(err, 0, "FUSE_INIT through the new virtiofsd");
    let (err, out) = d.call(FUSE_LOOKUP, 1, b"hello.txt\0", 16 + 128);
    assert_eq!(err, 0, "LOOKUP hello.txt");
    assert_eq!(u64::from_le_bytes(out[40 + 8..40 + 16].try_into().expect("size")), 20);
    // Mounted now: the session lives in virtiofsd b, so no snapshot, and it runs on.
    let e = clone.quiesce().expect_err("a used device");
    assert!(matches!(e, crate::virtio::snapshot::DeviceSnapshotError::FsInUse), "{e}");
    let (err, _) = d.call(FUSE_LOOKUP, 1, b"missing\0", 16 + 128);
    assert_eq!(err, -libc::ENOENT, "the rings went on after the refusal");
    clone.reset();
}
