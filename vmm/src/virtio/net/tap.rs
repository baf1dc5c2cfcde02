//! A TAP device with virtio-net headers (IFF_VNET_HDR, 12 bytes), non-blocking.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use super::{feature, NetBackend, NetError, VNET_HDR_LEN};

// From <linux/if_tun.h>.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;

pub struct Tap {
    file: File,
    pub name: String,
}

fn ioctl_err(op: &'static str) -> NetError {
    NetError::Ioctl { op, source: std::io::Error::last_os_error() }
}

impl Tap {
    /// Opens (creating if needed) tap `name`. A tap we create is not persistent: it
    /// disappears when this process closes it, however the process ends.
    pub fn open(name: &str) -> Result<Self, NetError> {
        let tap_err = |source| NetError::Tap { name: name.into(), source };
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(tap_err(std::io::Error::other("name must be 1-15 bytes")));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(tap_err)?;
        // SAFETY: ifreq is plain data; all-zero is valid.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        // SAFETY: TUNSETIFF reads (and updates) one ifreq that outlives the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut ifr) } < 0 {
            return Err(tap_err(std::io::Error::last_os_error()));
        }
        let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int that outlives the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETVNETHDRSZ as _, &size) } < 0 {
            return Err(ioctl_err("TUNSETVNETHDRSZ"));
        }
        Ok(Tap { file, name: name.into() })
    }
}

use std::os::unix::fs::OpenOptionsExt;

impl NetBackend for Tap {
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }

    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.file.write(frame).map(drop)
    }

    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn set_offloads(&mut self, acked: u64) -> std::io::Result<()> {
        // The tap may hand us only what the guest said it can take.
        let mut flags: libc::c_uint = 0;
        if acked & feature::GUEST_CSUM != 0 {
            flags |= TUN_F_CSUM;
            if acked & feature::GUEST_TSO4 != 0 {
                flags |= TUN_F_TSO4;
            }
            if acked & feature::GUEST_TSO6 != 0 {
                flags |= TUN_F_TSO6;
            }
        }
        // SAFETY: TUNSETOFFLOAD takes the flags by value.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), TUNSETOFFLOAD as _, flags as libc::c_ulong) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
