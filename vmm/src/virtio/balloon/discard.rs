//! Giving guest pages back to the host: a range of guest-physical memory is dropped
//! from our mapping, so its pages no longer count against us.
//!
//! Private memory (anonymous, or a template clone's copy-on-write mapping of the
//! snapshot) drops with `MADV_DONTNEED`: the next touch reads zeroes, or the
//! template's page, which clones share. Shared memory (a memfd that virtiofsd maps
//! too) drops with `MADV_REMOVE`, which punches the hole in the file itself: without
//! it the pages would stay in the memfd.

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::PAGE;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DiscardError {
    #[error("range {addr:#x}+{len:#x} is not whole 4 KiB pages")]
    Unaligned { addr: u64, len: u64 },
    #[error("range {addr:#x}+{len:#x} is not inside one region of guest RAM")]
    OutsideRam { addr: u64, len: u64 },
    #[error("madvise on {addr:#x}+{len:#x}: errno {errno}")]
    Madvise { addr: u64, len: u64, errno: i32 },
}

/// Where the queues send the ranges they were given (a test double records them).
pub trait Discard {
    fn discard(&mut self, mem: &GuestMemoryMmap, addr: GuestAddress, len: u64) -> Result<(), DiscardError>;
}

/// Discards from the VMM's own mapping of guest memory.
#[derive(Default)]
pub struct MemoryDiscard;

impl Discard for MemoryDiscard {
    fn discard(&mut self, mem: &GuestMemoryMmap, addr: GuestAddress, len: u64) -> Result<(), DiscardError> {
        let (host, advice) = host_range(mem, addr, len)?;
        // SAFETY: [host, host+len) lies inside one live mapping owned by `mem` (checked
        // by host_range); dropping its pages changes only their contents, which the
        // guest gave up, and never the mapping itself.
        let rc = unsafe { libc::madvise(host.cast(), len as usize, advice) };
        if rc != 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            return Err(DiscardError::Madvise { addr: addr.0, len, errno });
        }
        Ok(())
    }
}

/// The host address of a guest range lying whole inside one region, and the advice
/// that drops its pages there.
pub fn host_range(mem: &GuestMemoryMmap, addr: GuestAddress, len: u64) -> Result<(*mut u8, i32), DiscardError> {
    if len == 0 || !addr.0.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
        return Err(DiscardError::Unaligned { addr: addr.0, len });
    }
    let outside = DiscardError::OutsideRam { addr: addr.0, len };
    let Some(region) = mem.find_region(addr) else { return Err(outside) };
    let offset = addr.0 - region.start_addr().0;
    if offset.checked_add(len).is_none_or(|end| end > region.len()) {
        return Err(outside);
    }
    let advice = if region.flags() & libc::MAP_SHARED != 0 { libc::MADV_REMOVE } else { libc::MADV_DONTNEED };
    // The region is one mapping of region.len() bytes; offset + len is inside it.
    Ok((region.as_ptr().wrapping_add(offset as usize), advice))
}
