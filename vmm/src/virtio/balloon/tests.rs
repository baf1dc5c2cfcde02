//! Balloon scenarios on mock guest memory: a pretend driver inflates, deflates and
//! reports free pages, as a kind or a hostile guest would; the real discard runs on
//! the test's own mapping, so a dropped page shows as gone from it.

use std::os::fd::FromRawFd;

use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::queues::runs_for_test;
use super::{
    process_deflate, process_inflate, process_reporting, BalloonCounters, Discard, DiscardError, MemoryDiscard, PAGE,
};
use crate::virtio::mock_driver::{Buf, ChainDriver};

/// Where the tests' "guest pages" live: above the driver's rings and buffers.
const PAGES_AT: u64 = 16 << 20;

#[derive(Default)]
struct Recorder(Vec<(u64, u64)>);

impl Discard for Recorder {
    fn discard(&mut self, _mem: &GuestMemoryMmap, addr: GuestAddress, len: u64) -> Result<(), DiscardError> {
        self.0.push((addr.0, len));
        Ok(())
    }
}

fn pfns(list: &[u32]) -> Vec<u8> {
    list.iter().flat_map(|p| p.to_le_bytes()).collect()
}

/// Pages of `mem` at `addr` resident in this process (mincore).
fn resident(mem: &GuestMemoryMmap, addr: u64, len: u64) -> usize {
    let host = mem.get_host_address(GuestAddress(addr)).expect("in memory");
    let mut v = vec![0u8; (len / PAGE) as usize];
    // SAFETY: [host, host+len) lies inside the test's guest memory mapping, page
    // aligned, and `v` has one byte per page of it.
    let rc = unsafe { libc::mincore(host.cast(), len as usize, v.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore");
    v.iter().filter(|b| *b & 1 == 1).count()
}

fn shared_memory(bytes: u64) -> (GuestMemoryMmap, std::fs::File) {
    // SAFETY: memfd_create with a NUL-terminated name; the fd is checked and owned below.
    let fd = unsafe { libc::memfd_create(c"balloon-test".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create");
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.set_len(bytes).expect("size");
    let fo = FileOffset::new(f.try_clone().expect("clone"), 0);
    let mem = GuestMemoryMmap::from_ranges_with_files([(GuestAddress(0), bytes as usize, Some(fo))]).expect("memory");
    (mem, f)
}

fn allocated_bytes(f: &std::fs::File) -> u64 {
    use std::os::unix::fs::MetadataExt;
    f.metadata().expect("stat").blocks() * 512
}

#[test]
fn inflated_pages_are_dropped_in_runs() {
    let mut d = ChainDriver::new();
    let mut r = Recorder::default();
    let mut c = BalloonCounters::default();
    let base = (PAGES_AT / PAGE) as u32;
    d.chain(vec![Buf::Out(pfns(&[base, base + 1, base + 2, base + 7])), Buf::Out(pfns(&[base + 8]))]);
    assert!(process_inflate(&mut d.queue, d.mem, &mut r, &mut c));
    assert_eq!(d.used().len(), 1, "the chain comes back");
    assert_eq!(c.inflated_pages, 5);
    // Runs are found per batch of PFNs: here the two buffers are read as one.
    assert_eq!(r.0, vec![(PAGES_AT, 3 * PAGE), (PAGES_AT + 7 * PAGE, 2 * PAGE)]);
    assert_eq!(runs_for_test(&[5, 6, 9, 3, 4]), vec![(5, 2), (9, 1), (3, 2)]);
}

#[test]
fn deflate_gives_chains_back_and_drops_nothing() {
    let mut d = ChainDriver::new();
    let mut c = BalloonCounters::default();
    d.chain(vec![Buf::Out(pfns(&[1, 2, 3]))]);
    d.chain(vec![Buf::Out(pfns(&[9]))]);
    assert!(process_deflate(&mut d.queue, d.mem, &mut c));
    assert_eq!(d.used().len(), 2);
    assert_eq!(c.deflated_pages, 4);
}

#[test]
fn reported_free_pages_leave_private_memory_and_read_back_as_zero() {
    let mut d = ChainDriver::new();
    let mut c = BalloonCounters::default();
    let len = 64 * PAGE;
    d.mem.write_slice(&vec![0x5a; len as usize], GuestAddress(PAGES_AT)).expect("touch");
    assert_eq!(resident(d.mem, PAGES_AT, len), 64);
    d.chain(vec![
        Buf::At { addr: PAGES_AT, len: (len / 2) as u32, writable: true },
        Buf::At { addr: PAGES_AT + len / 2, len: (len / 2) as u32, writable: true },
    ]);
    assert!(process_reporting(&mut d.queue, d.mem, &mut MemoryDiscard, &mut c));
    let used = d.used();
    assert_eq!((used.len(), used[0].1), (1, 0), "the report comes back with nothing written");
    assert_eq!(resident(d.mem, PAGES_AT, len), 0, "no page of the report is left in our mapping");
    assert_eq!(c.reported_bytes, len);
    let mut back = vec![1u8; PAGE as usize];
    d.mem.read_slice(&mut back, GuestAddress(PAGES_AT + 5 * PAGE)).expect("read");
    assert!(back.iter().all(|b| *b == 0));
}

#[test]
fn reported_pages_of_shared_memory_leave_the_memfd_too() {
    let (mem, file) = shared_memory(32 << 20);
    let mut d = ChainDriver::on(mem);
    let mut c = BalloonCounters::default();
    let len = 2 << 20;
    d.mem.write_slice(&vec![0xa5; len as usize], GuestAddress(PAGES_AT)).expect("touch");
    let before = allocated_bytes(&file);
    d.chain(vec![Buf::At { addr: PAGES_AT, len: len as u32, writable: true }]);
    process_reporting(&mut d.queue, d.mem, &mut MemoryDiscard, &mut c);
    let after = allocated_bytes(&file);
    assert!(before - after >= len, "the memfd kept its pages: {before} → {after} bytes allocated");
    // A vhost-user daemon's mapping of the same file would read zeroes too.
    let mut back = vec![1u8; 64];
    d.mem.read_slice(&mut back, GuestAddress(PAGES_AT)).expect("read");
    assert!(back.iter().all(|b| *b == 0));
}

#[test]
fn hostile_reports_are_refused_and_every_chain_still_comes_back() {
    let mut d = ChainDriver::new();
    let mut c = BalloonCounters::default();
    d.mem.write_slice(&[0x77; 4096], GuestAddress(PAGES_AT)).expect("touch");
    let ram_end = d.mem.last_addr().0 + 1;
    d.chain(vec![
        // Not page aligned; not a whole page; past the end of RAM; straddling it;
        // device-readable (a report is device-writable); outside memory altogether.
        Buf::At { addr: PAGES_AT + 1, len: 4096, writable: true },
        Buf::At { addr: PAGES_AT, len: 100, writable: true },
        Buf::At { addr: ram_end, len: 4096, writable: true },
        Buf::At { addr: ram_end - 4096, len: 8192, writable: true },
        Buf::At { addr: PAGES_AT, len: 4096, writable: false },
        Buf::Wild,
    ]);
    assert!(process_reporting(&mut d.queue, d.mem, &mut MemoryDiscard, &mut c));
    assert_eq!(d.used().len(), 1);
    assert_eq!(c.refused, 6);
    assert_eq!(c.reported_bytes, 0);
    let mut back = [0u8; 4];
    d.mem.read_slice(&mut back, GuestAddress(PAGES_AT)).expect("read");
    assert_eq!(back, [0x77; 4], "a refused range is left as it was");
    // Inflating pages that are not RAM is refused the same way.
    let mut c = BalloonCounters::default();
    d.chain(vec![Buf::Out(pfns(&[u32::MAX, (ram_end / PAGE) as u32])), Buf::Out(vec![1, 2])]);
    assert!(process_inflate(&mut d.queue, d.mem, &mut MemoryDiscard, &mut c));
    assert_eq!((c.inflated_pages, c.refused), (2, 2));
}

#[test]
fn the_target_reaches_the_guest_as_a_config_change_and_actual_comes_back() {
    use crate::virtio::{ActivateContext, Interrupt, VirtioDevice, INT_CONFIG};
    use std::sync::Arc;
    use vmm_sys_util::eventfd::EventFd;
    let (mut b, control) = super::Balloon::new();
    // Before the driver is up the target is only stored.
    control.set_target(64 << 20).expect("target");
    let mut cfg = [0u8; 8];
    b.read_config(0, &mut cfg);
    assert_eq!(u32::from_le_bytes(cfg[0..4].try_into().expect("4")), (64 << 20) / PAGE as u32);
    let d = ChainDriver::new();
    let irq = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")));
    // As the transport gives them: all three queues, the reporting one unready.
    let events = (0..3).map(|_| EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")).collect();
    let queues = vec![d.fresh_queue(), d.fresh_queue(), d.fresh_queue()];
    let ctx =
        ActivateContext { mem: d.mem.clone(), queues, queue_events: events, interrupt: irq.clone(), acked_features: 0 };
    assert_eq!(b.queues_in_use(0), 2, "no reporting queue without PAGE_REPORTING");
    assert_eq!(b.queues_in_use(super::feature::PAGE_REPORTING), 3);
    b.activate(ctx).expect("activate");
    control.set_target(128 << 20).expect("target");
    assert_ne!(irq.status() & INT_CONFIG, 0, "the guest is told to read the target again");
    b.write_config(4, &1000u32.to_le_bytes());
    assert_eq!(control.actual_bytes(), 1000 * PAGE);
    b.write_config(0, &1u32.to_le_bytes());
    assert_eq!(control.target_bytes(), 128 << 20, "the guest cannot set the host's target");
    let saved = b.quiesce().expect("quiesce").expect("it ran");
    assert_eq!(saved.len(), 3, "a snapshot keeps every queue, used or not");
}
