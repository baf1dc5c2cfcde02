//! Snapshot files without KVM: a state written and read back, and every way a
//! snapshot directory can be wrong refused by name.

use super::*;
use crate::memory::{create_guest_memory, Backing};
use vm_memory::{Bytes, GuestAddress};

const API: i32 = 12;

fn vcpu() -> crate::vcpu::state::VcpuState {
    crate::vcpu::state::VcpuState {
        regs: kvm_bindings::kvm_regs { rip: 0x1234, ..Default::default() },
        sregs: Default::default(),
        xsave: Default::default(),
        xcrs: Default::default(),
        lapic: Default::default(),
        msrs: vec![kvm_bindings::kvm_msr_entry { index: 0x10, data: 99, ..Default::default() }],
        mp_state: Default::default(),
        events: Default::default(),
        debugregs: Default::default(),
    }
}

fn state() -> VmState {
    VmState {
        vcpus: vec![vcpu()],
        irqchips: vec![Default::default(); 3],
        pit: Default::default(),
        clock: Default::default(),
        serial: crate::devices::SerialSnapshot { regs: [1, 2, 3, 4, 5, 6, 7, 8, 9], in_buffer: vec![b'x'] },
        boot_timer_fired: 2,
        virtio: vec![],
    }
}

/// A snapshot of an 8 MiB guest with a few pages written, in `dir`.
fn write_one(dir: &Path) -> SaveReport {
    let mem = create_guest_memory(8 << 20, Backing::Anonymous).expect("memory");
    mem.write_obj(0xdead_beef_u64, GuestAddress(0x1000)).expect("write");
    mem.write_obj(0x1234_u64, GuestAddress((8 << 20) - 8)).expect("write");
    let mut t = SnapshotTarget::create(dir, 8 << 20).expect("target");
    let r = save(&mut t, Header::new(API, 8 << 20, 1, vec![]), &state(), &mem).expect("save");
    let again = save(&mut t, Header::new(API, 8 << 20, 1, vec![]), &state(), &mem);
    assert!(matches!(again, Err(SnapshotError::Unsupported(_))), "a second save into one target");
    r
}

#[test]
fn a_saved_snapshot_loads_back_with_its_memory_and_only_nonzero_pages_written() {
    let d = tempfile::tempdir().expect("tmp");
    let r = write_one(d.path());
    assert_eq!(r.memory_bytes_written, 2 * 4096, "two non-zero pages");
    let (h, st, mem) = load(d.path(), API).expect("load");
    assert_eq!((h.mem_bytes, h.vcpus), (8 << 20, 1));
    assert_eq!(st.vcpus[0].regs.rip, 0x1234);
    assert_eq!(st.vcpus[0].msrs[0].data, 99);
    assert_eq!(st.serial, state().serial);
    assert_eq!(st.boot_timer_fired, 2);
    assert_eq!(mem.metadata().expect("meta").len(), 8 << 20);
    // Holes where the guest had zeros: far less disk than memory.
    let blocks = std::os::unix::fs::MetadataExt::blocks(&mem.metadata().expect("meta"));
    assert!(blocks * 512 < 1 << 20, "{blocks} blocks for two pages");
}

#[test]
fn memory_maps_copy_on_write_and_leaves_the_file_alone() {
    let d = tempfile::tempdir().expect("tmp");
    write_one(d.path());
    let path = d.path().join(MEMORY_FILE);
    let before = std::fs::read(&path).expect("read");
    let f = std::fs::File::open(&path).expect("open");
    let a = crate::memory::map_snapshot_memory(&f, 8 << 20).expect("map a");
    let b = crate::memory::map_snapshot_memory(&f, 8 << 20).expect("map b");
    assert_eq!(a.read_obj::<u64>(GuestAddress(0x1000)).expect("read"), 0xdead_beef);
    a.write_obj(1u64, GuestAddress(0x1000)).expect("write a");
    assert_eq!(b.read_obj::<u64>(GuestAddress(0x1000)).expect("read"), 0xdead_beef, "b sees a's write");
    assert_eq!(std::fs::read(&path).expect("read"), before, "the file changed");
}

/// Rewrites `vm.snap` with `edit` applied to its header (and a matching hash).
fn with_header(dir: &Path, edit: impl Fn(&mut Header)) {
    let mut h = Header::new(API, 8 << 20, 1, vec![]);
    let st = state();
    edit(&mut h);
    let cfg = bincode::config::standard();
    let body = bincode::serde::encode_to_vec(&st, cfg).expect("enc");
    h.state_len = body.len() as u64;
    h.state_sha256 = sha2::Sha256::digest(&body).into();
    let head = bincode::serde::encode_to_vec(&h, cfg).expect("enc");
    let mut out = (head.len() as u32).to_le_bytes().to_vec();
    out.extend(head);
    out.extend(body);
    std::fs::write(dir.join(STATE_FILE), out).expect("write");
}
use sha2::Digest;

#[test]
fn a_wrong_header_is_refused_with_what_was_wrong() {
    let d = tempfile::tempdir().expect("tmp");
    write_one(d.path());
    type Edit = Box<dyn Fn(&mut Header)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|h| h.format = 99), "format version is 99"),
        (Box::new(|h| h.vmm_version = "0.0.1".into()), "isola-vmm version is 0.0.1"),
        (Box::new(|h| h.kvm_api = 11), "KVM API version is 11"),
        (Box::new(|h| h.devices = vec!["vsock".into()]), "device count differs"),
        (Box::new(|h| h.vcpus = 200), "200 vCPUs"),
        (Box::new(|h| h.mem_bytes = 3), "too small"),
    ];
    for (edit, want) in cases {
        with_header(d.path(), edit);
        let e = load(d.path(), API).err().expect("refused");
        assert!(e.to_string().contains(want), "want {want:?}, got {e}");
    }
    // A state whose vCPU count differs from the header's.
    with_header(d.path(), |h| h.vcpus = 2);
    let e = load(d.path(), API).err().expect("refused");
    assert!(e.to_string().contains("device count differs"), "{e}");
}

#[test]
fn a_damaged_or_foreign_file_is_refused() {
    let d = tempfile::tempdir().expect("tmp");
    write_one(d.path());
    let p = d.path().join(STATE_FILE);
    let good = std::fs::read(&p).expect("read");
    // One bit of the state flipped: the checksum catches it.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&p, &bad).expect("write");
    let e = load(d.path(), API).err().expect("refused");
    assert!(e.to_string().contains("checksum"), "{e}");
    // Cut short.
    std::fs::write(&p, &good[..good.len() / 2]).expect("write");
    assert!(load(d.path(), API).is_err());
    // Not a snapshot at all, and an absurd header length.
    std::fs::write(&p, b"\x10\x00\x00\x00hello, world....").expect("write");
    assert!(load(d.path(), API).is_err());
    std::fs::write(&p, u32::MAX.to_le_bytes()).expect("write");
    let e = load(d.path(), API).err().expect("refused");
    assert!(e.to_string().contains("header of"), "{e}");
    std::fs::write(&p, b"").expect("write");
    assert!(load(d.path(), API).err().expect("refused").to_string().contains("empty"));
    // A memory file of the wrong size, and one that is a symlink.
    with_header(d.path(), |_| {});
    assert!(load(d.path(), API).is_ok());
    let m = d.path().join(MEMORY_FILE);
    std::fs::OpenOptions::new().write(true).open(&m).expect("open").set_len(4096).expect("truncate");
    let e = load(d.path(), API).err().expect("refused");
    assert!(e.to_string().contains("4096 bytes, the header says"), "{e}");
    std::fs::remove_file(&m).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &m).expect("link");
    assert!(load(d.path(), API).is_err(), "a symlinked memory file was followed");
}
