//! virtio-net (device id 1) over a TAP device: checksum and TSO offloads negotiated
//! with the guest and passed to the tap, and mergeable receive buffers.

mod device;
mod event_handler;
mod queues;
mod tap;

#[cfg(test)]
mod tests;

pub use device::Net;
pub use queues::{process_tx, NetCounters, RxState};
pub use tap::Tap;

use std::os::fd::RawFd;

pub const NET_DEVICE_ID: u32 = 1;
pub const RXQ: usize = 0;
pub const TXQ: usize = 1;
pub const QUEUE_SIZE: u16 = 256;
/// virtio_net_hdr_v1: with VERSION_1 the header always carries num_buffers.
pub const VNET_HDR_LEN: usize = 12;
/// Largest frame we move (a 64 KiB TSO segment plus headers).
pub const MAX_FRAME: usize = 65_562;

/// Feature bits (virtio 1.2 §5.1.3).
pub mod feature {
    pub const CSUM: u64 = 1 << 0;
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MAC: u64 = 1 << 5;
    pub const GUEST_TSO4: u64 = 1 << 7;
    pub const GUEST_TSO6: u64 = 1 << 8;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const HOST_TSO6: u64 = 1 << 12;
    pub const MRG_RXBUF: u64 = 1 << 15;
}

/// What we offer: the guest may hand us unchecksummed and TSO frames, and takes them.
pub const OFFERED: u64 = feature::CSUM
    | feature::GUEST_CSUM
    | feature::MAC
    | feature::GUEST_TSO4
    | feature::GUEST_TSO6
    | feature::HOST_TSO4
    | feature::HOST_TSO6
    | feature::MRG_RXBUF;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot open tap {name}: {source}")]
    Tap { name: String, source: std::io::Error },
    #[error("tap ioctl {op}: {source}")]
    Ioctl { op: &'static str, source: std::io::Error },
    #[error("bad MAC address {0:?}")]
    BadMac(String),
}

/// Where frames go: a tap, or a test double.
pub trait NetBackend: Send {
    /// Reads one frame (with its 12-byte vnet header); WouldBlock when there is none.
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Writes one frame (with its vnet header).
    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()>;
    fn as_raw_fd(&self) -> RawFd;
    /// Tells the backend which offloads the guest accepted on receive.
    fn set_offloads(&mut self, acked_features: u64) -> std::io::Result<()>;
}

pub fn parse_mac(s: &str) -> Result<[u8; 6], NetError> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(NetError::BadMac(s.into()));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| NetError::BadMac(s.into()))?;
    }
    Ok(mac)
}
