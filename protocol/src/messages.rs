//! Requests the host sends and the agent's replies.

use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

use crate::AgentError;

/// Where a container's root filesystem comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RootfsSource {
    /// A tar stream the host sends on an [`Request::UploadRootfs`] connection first.
    Upload,
    /// A directory already in the guest: the sandbox's virtio-fs share.
    GuestPath {
        path: String,
        /// The directory is the container's own writable layer (a bundle's rootfs under
        /// Docker, podman or containerd): the container writes in it, as under runc.
        /// Otherwise it is an image shared by other containers, kept unwritten under an
        /// overlay whose upper layer lives and dies with the container.
        #[serde(default)]
        in_place: bool,
    },
    /// A disk the sandbox was given (virtio-blk), found by its serial. Read-only: an
    /// image's filesystem shared by every container of it, kept unwritten under an
    /// overlay whose upper layer lives and dies with the container. `in_place`: the
    /// container's own writable layer (containerd's blockfile snapshot), mounted
    /// read-write as its root, as under runc.
    Disk {
        serial: String,
        /// One of [`DISK_FILESYSTEMS`].
        fstype: String,
        #[serde(default)]
        in_place: bool,
    },
}

/// The filesystems a rootfs disk may hold: the guest kernel parses nothing else from
/// a disk.
pub const DISK_FILESYSTEMS: &[&str] = &["erofs", "ext4"];

/// Sandbox-wide settings, sent once before any container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub hostname: String,
    /// Name servers for /etc/resolv.conf.
    pub dns: Vec<String>,
    /// Extra /etc/hosts lines ("ip name").
    pub hosts: Vec<String>,
    /// The virtio-fs tag of the sandbox's shared directory, mounted at
    /// [`crate::SHARED_DIR`]; container rootfs and volumes come from there.
    #[serde(default)]
    pub shared_fs_tag: Option<String>,
    /// eth0's configuration; `None` leaves the sandbox with loopback only.
    #[serde(default)]
    pub network: Option<NetConfig>,
    /// The pod's sysctls (name, value), for the namespaces its containers share.
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
}

/// The guest's one interface, as the host set it up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    /// IPv4 address with prefix, e.g. `10.88.0.5/16`.
    pub address: String,
    /// Default gateway, if any.
    pub gateway: Option<String>,
    pub mtu: u32,
    /// The interface's MAC (`02:…`), set before it comes up: a guest restored from a
    /// template has the template's address until told its own.
    #[serde(default)]
    pub mac: Option<String>,
}

/// One of a process's stdio streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdioStream {
    Stdin,
    Stdout,
    Stderr,
    /// Both directions of a terminal (when the process has one).
    Tty,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, or 128 + signal when killed by a signal (shell convention).
    pub code: i32,
    pub signal: Option<i32>,
    /// The container's cgroup recorded an OOM kill.
    pub oom_killed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStatus {
    Created,
    Running,
    Paused,
    Stopped,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub status: ContainerStatus,
    /// The init process's pid in the guest, while it runs.
    pub pid: Option<i32>,
    pub exit: Option<ExitStatus>,
}

/// cgroup v2 statistics of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    pub cpu_usage_usec: u64,
    pub cpu_user_usec: u64,
    pub cpu_system_usec: u64,
    pub memory_current: u64,
    /// None when unlimited.
    pub memory_max: Option<u64>,
    pub memory_oom_kills: u64,
    pub pids_current: u64,
    pub pids_max: Option<u64>,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    /// Every process of the container, by guest pid (at most [`MAX_PIDS_LISTED`]).
    #[serde(default)]
    pub pids: Vec<i32>,
}

/// The most pids one stats reply lists (the rest are counted in `pids_current`).
pub const MAX_PIDS_LISTED: usize = 4096;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness and version.
    Ping,
    CreateSandbox {
        config: SandboxConfig,
    },
    /// Prepares the container (rootfs, namespaces, cgroup); its process waits for `Start`.
    CreateContainer {
        id: String,
        spec: Box<Spec>,
        rootfs: RootfsSource,
    },
    /// Starts the container's init (`exec_id` None) or a process added by `Exec`.
    Start {
        id: String,
        exec_id: Option<String>,
    },
    /// Adds a process to a running container; it waits for `Start` too.
    Exec {
        id: String,
        exec_id: String,
        process: Box<Process>,
    },
    Signal {
        id: String,
        exec_id: Option<String>,
        signal: i32,
        /// Every process in the container (its cgroup), not only the one named.
        #[serde(default)]
        all: bool,
    },
    /// Blocks until the process exits.
    Wait {
        id: String,
        exec_id: Option<String>,
    },
    CloseStdin {
        id: String,
        exec_id: Option<String>,
    },
    ResizeTty {
        id: String,
        exec_id: Option<String>,
        rows: u16,
        cols: u16,
    },
    Stats {
        id: String,
    },
    /// Replaces the container's cgroup limits (memory, CPU, pids) with these.
    Update {
        id: String,
        resources: Box<oci_spec::runtime::LinuxResources>,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Removes a stopped container (kills it first when `force`).
    Delete {
        id: String,
        force: bool,
    },
    List,
    /// The output a process produced while nothing was attached (detached runs): the
    /// last `max_bytes` of its interleaved stdout and stderr.
    Logs {
        id: String,
        exec_id: Option<String>,
        max_bytes: u32,
    },
    /// Sent once to a VM restored from a snapshot, before anything else runs in it:
    /// fresh entropy from the host for the guest's RNG (clones must never share its
    /// state) and the host's wall clock (the guest's stopped at the snapshot).
    Restored {
        /// [`RESTORE_ENTROPY_BYTES`] bytes from the host's RNG.
        entropy: Vec<u8>,
        /// Nanoseconds since the Unix epoch on the host.
        unix_time_ns: u64,
    },
    /// Powers the guest off.
    Shutdown,
    /// Turns this connection into one stdio stream of a process.
    AttachStdio {
        id: String,
        exec_id: Option<String>,
        stream: StdioStream,
    },
    /// Turns this connection into the tar stream of a container's rootfs (before `CreateContainer`).
    UploadRootfs {
        id: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Pong { protocol: u32, agent: String },
    Started { pid: i32 },
    Exited { status: ExitStatus },
    Stats { stats: ContainerStats },
    List { containers: Vec<ContainerInfo> },
    Logs { data: String },
    Error(AgentError),
}

/// How much entropy a restored guest gets (and accepts) from the host.
pub const RESTORE_ENTROPY_BYTES: usize = 64;

/// Container and exec ids: 1-64 of `[A-Za-z0-9_.-]`, not starting with `.` — they
/// become path components in the guest, so nothing else is accepted.
pub fn validate_id(id: &str) -> Result<(), AgentError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(AgentError::new(
            crate::ErrorCode::InvalidArgument,
            format!("invalid id {id:?}: use 1-64 of [A-Za-z0-9_.-]"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_become_paths_are_refused() {
        for good in ["c1", "web.1", "A_b-9", &"x".repeat(64)] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", "..", ".hidden", "a/b", "../../etc", "a b", "é", &"x".repeat(65)] {
            let e = validate_id(bad).expect_err(bad);
            assert_eq!(e.code, crate::ErrorCode::InvalidArgument);
        }
    }

    #[test]
    fn create_container_round_trips_an_oci_spec() {
        let spec = Spec::default();
        let req = Request::CreateContainer { id: "c".into(), spec: Box::new(spec), rootfs: RootfsSource::Upload };
        let json = serde_json::to_string(&req).expect("ser");
        assert!(json.contains("\"op\":\"create_container\""), "{json}");
        let back: Request = serde_json::from_str(&json).expect("de");
        assert_eq!(back, req);
    }
}
