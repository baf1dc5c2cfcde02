//! virtio-vsock (device id 19), hybrid style: the guest's stream sockets are backed by
//! unix sockets on the host. Host clients connect to one unix socket and say
//! `CONNECT <port>\n`; guest connections to host port P reach `<uds_path>_P`.

mod device;
mod event_handler;
mod packet;
mod queues;
mod unix;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod test_utils;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_backend;

pub use device::Vsock;
pub use packet::{Header, Packet};
pub use queues::{process_rx, process_tx, Counters};
pub use unix::BUF_ALLOC;
pub use unix::{MuxerError, UnixMuxer};

use std::os::fd::RawFd;

pub const VSOCK_DEVICE_ID: u32 = 19;
pub const RXQ: usize = 0;
pub const TXQ: usize = 1;
pub const EVQ: usize = 2;
pub const QUEUE_SIZE: u16 = 256;

/// The host's well-known CID.
pub const HOST_CID: u64 = 2;
/// Largest payload we accept or produce in one packet (Linux uses 64 KiB too).
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The only socket type we carry.
pub const TYPE_STREAM: u16 = 1;

/// Packet operations (virtio 1.2 §5.10.6).
pub mod op {
    pub const REQUEST: u16 = 1;
    pub const RESPONSE: u16 = 2;
    pub const RST: u16 = 3;
    pub const SHUTDOWN: u16 = 4;
    pub const RW: u16 = 5;
    pub const CREDIT_UPDATE: u16 = 6;
    pub const CREDIT_REQUEST: u16 = 7;
}

/// SHUTDOWN flags: the sender will receive / send no more.
pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error("descriptor chain unusable: {0}")]
    Chain(#[source] virtio_queue::Error),
    #[error("cannot read the packet from guest memory: {0}")]
    Read(#[source] std::io::Error),
    #[error("packet header needs 44 bytes, chain has {0}")]
    ShortHeader(usize),
    #[error("packet claims {claimed} payload bytes, chain carries {present}")]
    Truncated { claimed: usize, present: usize },
    #[error("packet payload of {0} bytes exceeds 64 KiB")]
    TooLarge(usize),
    #[error("rx buffer of {0} bytes cannot hold a packet header")]
    SmallRxBuffer(usize),
    #[error("packet from cid {got}, guest is cid {expected}")]
    WrongSourceCid { got: u64, expected: u64 },
    #[error("cannot write to guest memory: {0}")]
    GuestWrite(#[source] std::io::Error),
}

/// Where the device gets host-side connections from. The unix-socket muxer is one;
/// tests plug in others (for example one that injects errors).
pub trait VsockBackend: Send {
    /// Takes a packet the guest sent (already checked to come from the guest's CID).
    fn send_pkt(&mut self, pkt: Packet);
    /// The next packet for the guest, with at most `max_payload` payload bytes.
    fn recv_pkt(&mut self, max_payload: usize) -> Option<Packet>;
    /// Whether `recv_pkt` may have something.
    fn has_pending_rx(&self) -> bool;
    /// An fd that becomes readable when the backend has work (for the event loop).
    fn as_raw_fd(&self) -> RawFd;
    /// Handles whatever made that fd readable.
    fn process_events(&mut self);
    /// Drops every connection (the driver reset the device).
    fn reset(&mut self);
}
