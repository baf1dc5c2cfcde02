//! Guest physical memory: layout constants, RAM regions around the MMIO gap, and the e820 map.

use std::fs::File;
use std::os::fd::FromRawFd;

use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

/// Start of the real-mode interrupt vector table up to the EBDA: low RAM ends here.
pub const EBDA_START: u64 = 0x9_fc00;
/// Where the GDT lives (Linux boot protocol and PVH).
pub const GDT_ADDR: u64 = 0x500;
/// An empty IDT right after it: any exception before the guest loads its own triple-faults.
pub const IDT_ADDR: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO_ADDR: u64 = 0x6000;
/// PVH memory map, right after the start info.
pub const PVH_MEMMAP_ADDR: u64 = 0x6040;
/// Linux zero page (`boot_params`).
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK_ADDR: u64 = 0x8ff0;
/// PML4, then the PDPT, then four page directories (identity map of the low 4 GiB).
pub const PML4_ADDR: u64 = 0x9000;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Largest command line we accept (Linux x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX: usize = 2048;
/// Kernels load at or above 1 MiB.
pub const HIMEM_START: u64 = 0x10_0000;
/// The MMIO gap below 4 GiB: devices live here, RAM does not.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
/// End of the MMIO gap (4 GiB).
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// The boot-timer device (Firecracker's convention) is the first page of the gap.
pub const BOOT_TIMER_ADDR: u64 = MMIO_GAP_START;
/// virtio-mmio device windows follow it, one page each.
pub const VIRTIO_MMIO_BASE: u64 = MMIO_GAP_START + 0x1000;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// Smallest guest we build: enough for the boot structures and a tiny kernel.
pub const MIN_MEM_BYTES: u64 = 2 << 20;
/// Largest guest we accept (the PDPT identity map and sanity on a 24 GiB host alike).
pub const MAX_MEM_BYTES: u64 = 1 << 40;

/// e820 memory types.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// Errors building guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest memory of {0} bytes is too small (at least {MIN_MEM_BYTES} bytes)")]
    TooSmall(u64),
    #[error("guest memory of {0} bytes is too large (at most {MAX_MEM_BYTES} bytes)")]
    TooLarge(u64),
    #[error("guest memory size {0} is not a multiple of 4 KiB")]
    Unaligned(u64),
    #[error("cannot create memfd for guest memory: {0}")]
    Memfd(std::io::Error),
    #[error("cannot map guest memory: {0}")]
    Mmap(vm_memory::mmap::FromRangesError),
    #[error("cannot map the snapshot's memory file: {0}")]
    Snapshot(vm_memory::mmap::MmapRegionError),
    #[error("guest memory regions: {0}")]
    Regions(String),
}

/// How guest RAM is backed. `Shared` (a memfd) lets vhost-user daemons map it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    Anonymous,
    Shared,
}

/// One e820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// Guest RAM ranges for `mem_bytes` of memory: below the MMIO gap, and the rest above 4 GiB.
pub fn ram_ranges(mem_bytes: u64) -> Result<Vec<(GuestAddress, u64)>, MemoryError> {
    if mem_bytes < MIN_MEM_BYTES {
        return Err(MemoryError::TooSmall(mem_bytes));
    }
    if mem_bytes > MAX_MEM_BYTES {
        return Err(MemoryError::TooLarge(mem_bytes));
    }
    if !mem_bytes.is_multiple_of(4096) {
        return Err(MemoryError::Unaligned(mem_bytes));
    }
    if mem_bytes <= MMIO_GAP_START {
        return Ok(vec![(GuestAddress(0), mem_bytes)]);
    }
    Ok(vec![(GuestAddress(0), MMIO_GAP_START), (GuestAddress(MMIO_GAP_END), mem_bytes - MMIO_GAP_START)])
}

/// The e820 map the guest sees: low RAM up to the EBDA, then RAM from 1 MiB, split by the gap.
pub fn e820_map(mem_bytes: u64) -> Result<Vec<E820Entry>, MemoryError> {
    let ranges = ram_ranges(mem_bytes)?;
    let mut map = vec![
        E820Entry { addr: 0, size: EBDA_START, kind: E820_RAM },
        E820Entry { addr: EBDA_START, size: HIMEM_START - EBDA_START, kind: E820_RESERVED },
    ];
    for (start, len) in ranges {
        let begin = start.0.max(HIMEM_START);
        let end = start.0 + len;
        if end > begin {
            map.push(E820Entry { addr: begin, size: end - begin, kind: E820_RAM });
        }
    }
    Ok(map)
}

/// The highest guest address of RAM below the MMIO gap (exclusive).
pub fn low_ram_end(mem_bytes: u64) -> u64 {
    mem_bytes.min(MMIO_GAP_START)
}

/// Maps guest RAM for `mem_bytes`, anonymous or memfd-backed.
pub fn create_guest_memory(mem_bytes: u64, backing: Backing) -> Result<GuestMemoryMmap, MemoryError> {
    let ranges = ram_ranges(mem_bytes)?;
    let mut regions = Vec::with_capacity(ranges.len());
    let memfd = match backing {
        Backing::Anonymous => None,
        Backing::Shared => Some(create_memfd(mem_bytes)?),
    };
    let mut file_offset = 0u64;
    for (start, len) in ranges {
        let fo = match &memfd {
            Some(f) => Some(FileOffset::new(f.try_clone().map_err(MemoryError::Memfd)?, file_offset)),
            None => None,
        };
        file_offset += len;
        regions.push((start, len as usize, fo));
    }
    GuestMemoryMmap::from_ranges_with_files(regions).map_err(MemoryError::Mmap)
}

/// Maps guest RAM for `mem_bytes` from a snapshot's memory file, copy-on-write
/// (`MAP_PRIVATE`): clones share every page they have not written, and the file is
/// never changed.
pub fn map_snapshot_memory(file: &File, mem_bytes: u64) -> Result<GuestMemoryMmap, MemoryError> {
    let ranges = ram_ranges(mem_bytes)?;
    let mut regions = Vec::with_capacity(ranges.len());
    let mut file_offset = 0u64;
    for (start, len) in ranges {
        let fo = FileOffset::new(file.try_clone().map_err(MemoryError::Memfd)?, file_offset);
        let map = vm_memory::mmap::MmapRegionBuilder::new(len as usize)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_NORESERVE | libc::MAP_PRIVATE)
            .with_file_offset(fo)
            .build()
            .map_err(MemoryError::Snapshot)?;
        regions.push(vm_memory::GuestRegionMmap::new(map, start).ok_or(MemoryError::Unaligned(start.0))?);
        file_offset += len;
    }
    GuestMemoryMmap::from_regions(regions).map_err(|e| MemoryError::Regions(e.to_string()))
}

/// Guest RAM for `mem_bytes` in a fresh memfd holding a copy of a snapshot's memory
/// file, for a restore that shares its memory with a vhost-user daemon (virtiofsd
/// maps it, so it cannot be a private mapping). Only the file's data extents are
/// copied; its holes stay zero.
pub fn copy_snapshot_memory(file: &File, mem_bytes: u64) -> Result<GuestMemoryMmap, MemoryError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let memfd = create_memfd(mem_bytes)?;
    let mut buf = Vec::new();
    let mut at: i64 = 0;
    let end = mem_bytes as i64;
    while at < end {
        // SAFETY: lseek on an fd we own; it moves only that fd's offset.
        let data = unsafe { libc::lseek(file.as_raw_fd(), at, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: no data after `at`.
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(file.as_raw_fd(), data, libc::SEEK_HOLE) }.min(end);
        let mut off = data;
        while off < hole {
            let n = ((hole - off) as usize).min(1 << 20);
            // One copy inside the kernel (page cache to the memfd's pages) when it can;
            // through a buffer otherwise.
            let sent = send_at(file, &memfd, off, n);
            let n = match sent {
                Some(sent) => sent,
                None => {
                    buf.resize(n, 0);
                    file.read_exact_at(&mut buf[..n], off as u64).map_err(MemoryError::Memfd)?;
                    memfd.write_all_at(&buf[..n], off as u64).map_err(MemoryError::Memfd)?;
                    n
                }
            };
            off += n as i64;
        }
        at = hole.max(data + 1);
    }
    let ranges = ram_ranges(mem_bytes)?;
    let mut regions = Vec::with_capacity(ranges.len());
    let mut file_offset = 0u64;
    for (start, len) in ranges {
        let fo = FileOffset::new(memfd.try_clone().map_err(MemoryError::Memfd)?, file_offset);
        file_offset += len;
        regions.push((start, len as usize, Some(fo)));
    }
    GuestMemoryMmap::from_ranges_with_files(regions).map_err(MemoryError::Mmap)
}

/// Up to `n` bytes at `off` from `from` to the same offset of `to` with sendfile(2);
/// None when nothing was sent (the caller copies instead).
fn send_at(from: &File, to: &File, off: i64, n: usize) -> Option<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: lseek on an fd we own; only its offset moves (sendfile writes there).
    if unsafe { libc::lseek(to.as_raw_fd(), off, libc::SEEK_SET) } != off {
        return None;
    }
    let mut from_off: libc::off_t = off;
    // SAFETY: both fds are open files of ours; `from_off` lives for the call, and
    // sendfile reads `from` at it without moving `from`'s own offset.
    let sent = unsafe { libc::sendfile(to.as_raw_fd(), from.as_raw_fd(), &mut from_off, n) };
    usize::try_from(sent).ok().filter(|s| *s > 0)
}

fn create_memfd(size: u64) -> Result<File, MemoryError> {
    let name = c"isola-guest-ram";
    // SAFETY: `name` is a valid NUL-terminated string; memfd_create has no other memory inputs.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(MemoryError::Memfd(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size).map_err(MemoryError::Memfd)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

    #[test]
    fn small_guest_is_one_region_below_the_gap() {
        let r = ram_ranges(128 << 20).expect("valid size");
        assert_eq!(r, vec![(GuestAddress(0), 128 << 20)]);
    }

    #[test]
    fn large_guest_is_split_around_the_mmio_gap() {
        let mem = 4u64 << 30;
        let r = ram_ranges(mem).expect("valid size");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], (GuestAddress(0), MMIO_GAP_START));
        assert_eq!(r[1].0, GuestAddress(MMIO_GAP_END));
        assert_eq!(r[0].1 + r[1].1, mem, "no RAM lost to the gap");
    }

    #[test]
    fn e820_reserves_ebda_and_never_covers_the_gap() {
        let map = e820_map(4u64 << 30).expect("valid size");
        assert_eq!(map[0], E820Entry { addr: 0, size: EBDA_START, kind: E820_RAM });
        assert_eq!(map[1].kind, E820_RESERVED);
        for e in &map {
            let end = e.addr + e.size;
            assert!(end <= MMIO_GAP_START || e.addr >= MMIO_GAP_END, "{e:?} overlaps the gap");
        }
        let ram: u64 = map.iter().filter(|e| e.kind == E820_RAM).map(|e| e.size).sum();
        assert_eq!(ram, (4u64 << 30) - (HIMEM_START - EBDA_START));
    }

    #[test]
    fn absurd_sizes_are_rejected_with_the_size_named() {
        assert!(matches!(ram_ranges(0), Err(MemoryError::TooSmall(0))));
        assert!(matches!(ram_ranges(1 << 50), Err(MemoryError::TooLarge(_))));
        let e = ram_ranges((64 << 20) + 1).expect_err("unaligned");
        assert!(e.to_string().contains("67108865"), "{e}");
    }

    #[test]
    fn a_snapshot_copied_into_a_memfd_keeps_its_data_and_its_holes_read_zero() {
        use std::os::unix::fs::FileExt;
        use vm_memory::Bytes;
        let f = tempfile::tempfile().expect("file");
        f.set_len(8 << 20).expect("size");
        f.write_all_at(&[7u8; 4096], 0x1000).expect("write");
        f.write_all_at(&[9u8; 10], (8 << 20) - 10).expect("write");
        let mem = copy_snapshot_memory(&f, 8 << 20).expect("copy");
        assert!(mem.iter().next().expect("region").file_offset().is_some(), "memfd-backed");
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1000)).expect("read"), 7);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1fff)).expect("read"), 7);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x2000)).expect("read"), 0);
        assert_eq!(mem.read_obj::<u8>(GuestAddress((8 << 20) - 1)).expect("read"), 9);
        mem.write_obj(1u8, GuestAddress(0x1000)).expect("write");
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 0x1000).expect("read");
        assert_eq!(b[0], 7, "the file is not written through");
    }

    #[test]
    fn shared_backing_maps_every_region_from_one_memfd() {
        let mem = create_guest_memory(8 << 20, Backing::Shared).expect("memfd memory");
        let region = mem.iter().next().expect("one region");
        assert!(region.file_offset().is_some(), "memfd-backed");
        assert_eq!(mem.last_addr(), GuestAddress((8 << 20) - 1));
        let anon = create_guest_memory(8 << 20, Backing::Anonymous).expect("anon memory");
        assert!(anon.iter().next().expect("region").file_offset().is_none());
    }
}
