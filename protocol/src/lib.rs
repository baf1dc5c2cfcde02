//! The host ↔ agent protocol.
//!
//! Transport: vsock stream connections to [`AGENT_PORT`]. On the host this is a
//! hybrid-vsock unix socket: write `CONNECT <port>\n`, read `OK <port>\n`, then the
//! stream is the guest's (see [`client`]).
//!
//! Every connection starts with request/response frames ([`frame`]: 4-byte big-endian
//! length, then JSON). The control connection stays that way. A connection whose first
//! request is [`Request::AttachStdio`] or [`Request::UploadRootfs`] turns into a raw byte
//! stream after the `Ok` reply: one connection per stdio stream, so a slow stdout never
//! blocks stdin or another container's traffic (no head-of-line blocking).

pub mod client;
pub mod error;
pub mod frame;
pub mod messages;
pub mod mount_options;
pub mod spec_rules;

pub use error::{AgentError, ErrorCode};
pub use messages::*;
pub use mount_options::{mount_option, MountFlag, MOUNT_OPTIONS};

/// Bumped on any incompatible change; `Ping` reports it and the host refuses a mismatch.
pub const PROTOCOL_VERSION: u32 = 1;

/// The vsock port the agent listens on.
pub const AGENT_PORT: u32 = 1024;
/// Where the guest mounts the sandbox's shared (virtio-fs) directory.
pub const SHARED_DIR: &str = "/run/isola/shared";
/// The virtio-fs tag isola gives that directory.
pub const SHARED_FS_TAG: &str = "isola-shared";

/// What the agent prints on the console once it listens: boot probes, tests and the
/// sandbox wait for this line (`isola-init: ready uptime=… agent=vsock:<port>`).
pub const READY_MARKER: &str = "isola-init: ready";
/// The part of the ready line that says the agent's vsock listener is up.
pub const READY_AGENT_FIELD: &str = "agent=vsock:";

/// Largest frame either side accepts (an OCI spec is a few KiB; this is a sanity bound).
pub const MAX_FRAME: usize = 4 << 20;
