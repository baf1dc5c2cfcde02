//! The hybrid-vsock backend: one listening unix socket for host-initiated connections
//! (`CONNECT <port>\n` → `OK <local port>\n`) and `<uds_path>_<port>` for the guest's.
//! Each connection (`conn.rs`) runs the virtio-vsock stream state machine with
//! credit-based flow control and says what must happen; the muxer (`muxer.rs`) only
//! routes packets and socket events by key and carries that out; `handshake.rs` reads
//! the `CONNECT` line.

mod conn;
mod handshake;
mod muxer;

pub use conn::BUF_ALLOC;
#[cfg(test)]
pub use muxer::MAX_CONTROL_QUEUE;
pub use muxer::{MuxerError, UnixMuxer};
