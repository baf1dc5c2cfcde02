//! Block request scenarios on mock guest memory: a pretend driver queues chains of
//! header, data and status buffers, as a kind or a hostile driver would.

use virtio_queue::Queue;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::virtio::mock_driver::Buf;

use super::queues::Disk;
use super::{process_queue, request, BlockCounters, DiskBackend, DiskFile, DiskSpec, MemDisk, MAX_REQUEST_BYTES};

type Driver = crate::virtio::mock_driver::ChainDriver;

/// Serves what the driver queued on a disk.
fn run(d: &mut Driver, disk: &mut MemDisk, read_only: bool, c: &mut BlockCounters) -> bool {
    let mut buf = Vec::new();
    let mut disk = Disk { backend: disk, read_only, serial: "isola-img-0123456789", buf: &mut buf };
    process_queue(&mut d.queue, d.mem, &mut disk, c)
}

fn header(kind: u32, sector: u64) -> Vec<u8> {
    let mut h = kind.to_le_bytes().to_vec();
    h.extend([0u8; 4]);
    h.extend(sector.to_le_bytes());
    h
}

fn disk() -> MemDisk {
    MemDisk { bytes: (0..8192u32).map(|i| (i / 512) as u8 + 1).collect(), ..Default::default() }
}

#[test]
fn reads_writes_and_flushes_reach_the_disk_with_an_ok_status() {
    let mut d = Driver::new();
    let mut mem = disk();
    let mut c = BlockCounters::default();
    // Read sectors 2..4 into two buffers, the status in a third.
    let r = d.chain(vec![Buf::Out(header(request::IN, 2)), Buf::In(512), Buf::In(512), Buf::In(1)]);
    let w = d.chain(vec![Buf::Out(header(request::OUT, 5)), Buf::Out(vec![0xab; 1024]), Buf::In(1)]);
    let f = d.chain(vec![Buf::Out(header(request::FLUSH, 0)), Buf::In(1)]);
    assert!(run(&mut d, &mut mem, false, &mut c));
    let used = d.used();
    assert_eq!(used.len(), 3);
    let (head, len, bytes) = &used[0];
    assert_eq!((*head, *len), (r, 1025), "1024 bytes read and the status");
    assert_eq!(&bytes[..512], &[3u8; 512][..], "sector 2");
    assert_eq!(&bytes[512..1024], &[4u8; 512][..], "sector 3");
    assert_eq!(bytes[1024], request::S_OK);
    assert_eq!((used[1].0, used[1].1, used[1].2.as_slice()), (w, 1, &[request::S_OK][..]));
    assert_eq!(&mem.bytes[5 * 512..7 * 512], &[0xab; 1024][..], "written");
    assert_eq!((used[2].0, used[2].2.as_slice()), (f, &[request::S_OK][..]));
    assert_eq!(mem.flushes, 1);
    assert_eq!((c.reads, c.writes, c.flushes, c.failed), (1, 1, 1, 0));
}

#[test]
fn a_read_only_disk_refuses_writes_with_ioerr_and_keeps_its_bytes() {
    let mut d = Driver::new();
    let mut mem = disk();
    let before = mem.bytes.clone();
    let mut c = BlockCounters::default();
    d.chain(vec![Buf::Out(header(request::OUT, 0)), Buf::Out(vec![0; 512]), Buf::In(1)]);
    run(&mut d, &mut mem, true, &mut c);
    assert_eq!(d.used()[0].2, [request::S_IOERR]);
    assert_eq!(mem.bytes, before);
    assert_eq!(c.failed, 1);
}

#[test]
fn get_id_returns_the_serial_and_unknown_requests_are_unsupported() {
    let mut d = Driver::new();
    let mut mem = disk();
    let mut c = BlockCounters::default();
    d.chain(vec![Buf::Out(header(request::GET_ID, 0)), Buf::In(20), Buf::In(1)]);
    d.chain(vec![Buf::Out(header(99, 0)), Buf::In(1)]);
    run(&mut d, &mut mem, false, &mut c);
    let used = d.used();
    assert_eq!((used[0].1, &used[0].2[..20]), (21, &b"isola-img-0123456789"[..]));
    assert_eq!(used[0].2[20], request::S_OK);
    assert_eq!(used[1].2, [request::S_UNSUPP]);
}

/// Past the end, partial sectors, an oversized request, a short header, a buffer
/// outside guest memory, no status byte at all: each comes back (IOERR where there is
/// room to say so), nothing panics, and the queue goes on.
#[test]
fn bad_chains_are_answered_and_the_queue_goes_on() {
    let mut d = Driver::new();
    let mut mem = disk();
    let mut c = BlockCounters::default();
    let sectors = mem.size() / 512;
    d.chain(vec![Buf::Out(header(request::IN, sectors - 1)), Buf::In(1024), Buf::In(1)]);
    d.chain(vec![Buf::Out(header(request::IN, u64::MAX / 256)), Buf::In(512), Buf::In(1)]);
    d.chain(vec![Buf::Out(header(request::IN, 0)), Buf::In(100), Buf::In(1)]);
    d.chain(vec![Buf::Out(header(request::OUT, 0)), Buf::Out(vec![0; MAX_REQUEST_BYTES + 512]), Buf::In(1)]);
    d.chain(vec![Buf::Out(vec![0; 7]), Buf::In(1)]);
    d.chain(vec![Buf::Out(header(request::IN, 0)), Buf::Wild, Buf::In(1)]);
    d.chain(vec![Buf::Out(header(request::IN, 0))]);
    let ok = d.chain(vec![Buf::Out(header(request::IN, 0)), Buf::In(512), Buf::In(1)]);
    let before = mem.bytes.clone();
    run(&mut d, &mut mem, false, &mut c);
    let used = d.used();
    assert_eq!(used.len(), 8, "every chain comes back");
    for (head, len, bytes) in &used[..5] {
        assert_eq!((*len, bytes.last()), (1, Some(&request::S_IOERR)), "chain {head}");
    }
    assert_eq!(used[6].1, 0, "no status byte: nothing written");
    let last = &used[7];
    assert_eq!((last.0, last.1, last.2[512]), (ok, 513, request::S_OK));
    assert_eq!(mem.bytes, before, "nothing was written by a bad request");
    assert_eq!(c.failed, 7);
}

#[test]
fn disk_specs_parse_and_bad_ones_say_why() {
    let d: DiskSpec = "/img/a.erofs,ro,id=isola-abc".parse().expect("spec");
    assert_eq!(d, DiskSpec { path: Some("/img/a.erofs".into()), read_only: true, serial: "isola-abc".into() });
    let p = DiskSpec::placeholder("isola-slot0").expect("placeholder");
    assert_eq!((p.path, p.read_only), (None, true));
    assert!(DiskSpec::placeholder("a placeholder id that is far too long").is_err());
    for bad in ["", ",ro", "/a,rw", "/a,id=a-serial-longer-than-twenty", "/a,id=with space"] {
        assert!(bad.parse::<DiskSpec>().is_err(), "{bad:?}");
    }
}

#[test]
fn a_disk_file_is_whole_sectors_and_a_symlink_is_not_followed() {
    let t = tempfile::tempdir().expect("tmp");
    let f = t.path().join("disk");
    std::fs::write(&f, vec![7u8; 1500]).expect("write");
    let mut disk = DiskFile::open(&f, true).expect("open");
    assert_eq!(disk.size(), 1024, "the partial third sector is left out");
    let mut b = [0u8; 512];
    disk.read_at(&mut b, 512).expect("read");
    assert_eq!(b, [7u8; 512]);
    assert!(disk.write_at(&b, 0).is_err(), "opened read-only");
    std::os::unix::fs::symlink(&f, t.path().join("link")).expect("symlink");
    assert!(DiskFile::open(&t.path().join("link"), true).is_err());
    assert!(DiskFile::open(t.path(), true).is_err(), "a directory is no disk");
}

/// A running device (its worker thread serving a real kick) is quiesced for a
/// snapshot, and a new device resumed from those queues serves the next request where
/// the first left off: the restored ring does not serve a request twice or skip one.
#[test]
fn a_snapshot_round_trip_continues_the_queue_on_a_new_device() {
    use crate::virtio::{ActivateContext, Interrupt, VirtioDevice};
    use std::sync::Arc;
    use vmm_sys_util::eventfd::EventFd;

    let mut d = Driver::new();
    let irq = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("irq")));
    let kick = EventFd::new(libc::EFD_NONBLOCK).expect("kick");
    let ctx = |queues: Vec<Queue>, kick: &EventFd| ActivateContext {
        mem: d.mem.clone(),
        queues,
        queue_events: vec![kick.try_clone().expect("kick")],
        interrupt: irq.clone(),
        acked_features: super::feature::FLUSH,
    };
    let wait_used = |d: &mut Driver, n: usize| -> Vec<(u16, u32, Vec<u8>)> {
        let mut got = Vec::new();
        for _ in 0..500 {
            got.extend(d.used());
            if got.len() >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        got
    };
    let mut template = super::Block::new(Box::new(disk()), false, "isola-snap".into());
    let queue = d.fresh_queue();
    template.activate(ctx(vec![queue], &kick)).expect("activate");
    d.chain(vec![Buf::Out(header(request::IN, 1)), Buf::In(512), Buf::In(1)]);
    kick.write(1).expect("kick");
    let first = wait_used(&mut d, 1);
    assert_eq!(first.len(), 1, "served by the worker");
    assert_eq!(&first[0].2[..512], &[2u8; 512][..]);
    let states = template.quiesce().expect("quiesce").expect("it ran");
    assert_eq!(states[0].next_avail, 1);
    drop(template);

    let mut clone = super::Block::new(Box::new(disk()), false, "isola-snap".into());
    let queues = states.iter().map(|q| Queue::try_from(*q).expect("queue")).collect();
    clone.resume(ctx(queues, &kick), true).expect("resume");
    d.chain(vec![Buf::Out(header(request::IN, 3)), Buf::In(512), Buf::In(1)]);
    kick.write(1).expect("kick");
    let second = wait_used(&mut d, 1);
    assert_eq!(second.len(), 1, "exactly the new request");
    assert_eq!((second[0].1, &second[0].2[..512]), (513, &[4u8; 512][..]));
    clone.reset();
}

/// A template's placeholder restored with a clone's own disk: through the transport,
/// the driver is told (config interrupt, new config generation) and reads the new
/// capacity.
#[test]
fn a_restored_disk_raises_a_config_change_with_its_own_capacity() {
    use crate::devices::BusDevice;
    use crate::virtio::{Interrupt, MmioTransport, INT_CONFIG};
    use std::sync::Arc;
    use vmm_sys_util::eventfd::EventFd;

    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("mem");
    let transport = |disk: Box<dyn DiskBackend>| {
        let irq = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("irq")));
        MmioTransport::new(Box::new(super::Block::new(disk, true, "isola-slot0".into())), mem.clone(), irq)
            .expect("transport")
    };
    let reg = |t: &mut MmioTransport, off: u64| {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    };
    let set = |t: &mut MmioTransport, off: u64, v: u32| t.write(off, &v.to_le_bytes());
    let mut template = transport(Box::new(super::EmptyDisk));
    set(&mut template, 0x70, 1 | 2);
    set(&mut template, 0x24, 1);
    set(&mut template, 0x20, 1); // VERSION_1 (bit 32)
    set(&mut template, 0x70, 1 | 2 | 8);
    set(&mut template, 0x30, 0);
    set(&mut template, 0x38, 16);
    for (off, addr) in [(0x80, 0x1_0000), (0x90, 0x1_0400), (0xa0, 0x1_0800)] {
        set(&mut template, off, addr);
    }
    set(&mut template, 0x44, 1);
    set(&mut template, 0x70, 1 | 2 | 8 | 4);
    assert!(template.is_active());
    assert_eq!(reg(&mut template, 0x100), 0, "the placeholder has no sectors");
    let snap = template.snapshot().expect("snapshot");
    let generation = reg(&mut template, 0xfc);

    let mut clone = transport(Box::new(MemDisk { bytes: vec![0; 64 << 10], ..Default::default() }));
    clone.restore(&snap).expect("restore");
    assert_eq!(reg(&mut clone, 0x60) & INT_CONFIG, 0, "nothing raised before it starts");
    clone.start_restored().expect("start");
    assert_ne!(reg(&mut clone, 0x60) & INT_CONFIG, 0, "a config interrupt");
    assert_ne!(reg(&mut clone, 0xfc), generation, "a new config generation");
    assert_eq!(reg(&mut clone, 0x100), 128, "64 KiB in sectors");
}
