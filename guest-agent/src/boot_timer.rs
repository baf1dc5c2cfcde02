//! Tells the VMM that userspace started: write the magic to the boot-timer page
//! through /dev/mem. Where no device is there (QEMU) the write goes nowhere.

use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// Guest-physical address of the boot-timer device.
pub const BOOT_TIMER_ADDR: i64 = 0xd000_0000;
pub const BOOT_TIMER_MAGIC: u8 = 123;

pub fn signal_boot_timer() -> std::io::Result<()> {
    let mem = OpenOptions::new().read(true).write(true).custom_flags(libc::O_SYNC).open("/dev/mem")?;
    let len = std::num::NonZeroUsize::new(4096).ok_or_else(|| std::io::Error::other("zero length"))?;
    // SAFETY: a fresh shared mapping of one device page, touched only through the
    // returned pointer below and unmapped before returning.
    let page = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            mem.as_fd(),
            BOOT_TIMER_ADDR,
        )
    }
    .map_err(std::io::Error::from)?;
    // SAFETY: `page` is a valid, writable mapping of at least one byte.
    unsafe { std::ptr::write_volatile(page.as_ptr().cast::<u8>(), BOOT_TIMER_MAGIC) };
    // SAFETY: unmapping exactly the mapping created above; no references to it remain.
    unsafe { munmap(page, 4096) }.map_err(std::io::Error::from)?;
    Ok(())
}
