//! What a VM is built from ([`VmConfig`] and its parts) and how building or running
//! it fails ([`VmError`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::boot::BootError;
use crate::memory::{self, Backing, MemoryError};
use crate::vcpu::VcpuError;

/// Where the serial console goes.
#[derive(Debug, Clone)]
pub enum ConsoleOut {
    Stdout,
    File(PathBuf),
    Discard,
}

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub mem_mib: u64,
    pub vcpus: u8,
    pub console: ConsoleOut,
    /// Give up (and say where the guest was) after this long.
    pub timeout: Option<Duration>,
    pub backing: Backing,
    /// A virtio-vsock device backed by unix sockets on the host.
    pub vsock: Option<VsockConfig>,
    /// A virtio-net device on this tap (created if missing, gone when we exit).
    pub net: Option<NetConfig>,
    /// A virtio-fs device served by the vhost-user daemon (virtiofsd) at this socket.
    pub fs: Option<FsConfig>,
    /// virtio-blk disks, in order (the guest's vda, vdb, …), opened at start.
    pub disks: Vec<crate::virtio::block::DiskSpec>,
    /// A virtio-balloon device (free page reporting, and a target the control API
    /// sets), after the disks.
    pub balloon: bool,
    /// How much the VMM gives up before the guest runs ([`crate::confine`]).
    pub confine: Confine,
    /// The unprivileged (uid, gid) to run the guest as, once everything is open.
    pub user: Option<(u32, u32)>,
    /// Running inside [`crate::jail`] (entered by `main`): pivot into its root once
    /// everything is open.
    pub jailed: bool,
    /// The control API's socket ([`crate::control`]).
    pub api_sock: Option<PathBuf>,
    /// Where the control API's `snapshot` writes (opened at start).
    pub snapshot_to: Option<PathBuf>,
    /// Start from this snapshot directory instead of booting a kernel.
    pub restore_from: Option<PathBuf>,
}

/// `Full` unless asked otherwise for debugging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Confine {
    #[default]
    Full,
    /// Capabilities, no_new_privs and limits, but no syscall filter (unsafe).
    NoSeccomp,
    /// Nothing given up (unsafe).
    Off,
    /// Full, then a syscall outside the filter: the process must be killed (tests).
    SelfTest,
}

#[derive(Debug, Clone)]
pub struct FsConfig {
    pub socket: PathBuf,
    pub tag: String,
}

#[derive(Debug, Clone)]
pub struct NetConfig {
    pub tap: String,
    pub mac: [u8; 6],
}

/// The guest's vsock: its CID and the host unix socket (`CONNECT <port>` protocol).
#[derive(Debug, Clone)]
pub struct VsockConfig {
    pub guest_cid: u64,
    pub uds_path: PathBuf,
}

/// The interrupt line of the first virtio-mmio slot (serial has 4).
pub const VIRTIO_IRQ_BASE: u32 = 5;

pub use crate::vcpu::MAX_VCPUS;

/// How a VM run ended, when it ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmReport {
    /// Time from VMM start until memory, devices and vCPUs were ready.
    pub ready: Duration,
    /// Boot-timer writes, in order.
    pub boot_timer: Vec<Duration>,
    /// Time from VMM start until the guest reset.
    pub exited: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("cannot open /dev/kvm: {0}")]
    OpenKvm(kvm_ioctls::Error),
    #[error("kvm {op} failed: {source}")]
    Kvm { op: &'static str, source: kvm_ioctls::Error },
    #[error("cannot open console output {path}: {source}")]
    Console { path: String, source: std::io::Error },
    #[error("vsock device: {0}")]
    Vsock(#[from] crate::virtio::vsock::MuxerError),
    #[error("net device: {0}")]
    Net(#[from] crate::virtio::net::NetError),
    #[error("block device: {0}")]
    Block(#[from] crate::virtio::block::BlockError),
    #[error("fs device: {0}")]
    Fs(#[from] crate::virtio::fs::FsError),
    #[error("device bus: {0}")]
    Bus(#[from] crate::devices::BusError),
    #[error("{what}: {source}")]
    Setup { what: &'static str, source: std::io::Error },
    #[error("jail: {0}")]
    Jail(crate::jail::JailError),
    #[error("confining the VMM: {0}")]
    Confine(crate::confine::ConfineError),
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    #[error("snapshot: {0}")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error("restoring a virtio device: {0}")]
    Restore(#[source] crate::virtio::snapshot::DeviceSnapshotError),
    #[error("restoring the serial console: {0}")]
    Serial(#[from] crate::devices::SerialRestoreError),
    #[error("guest did not finish within {timeout:?}; stopped at rip {rip:#x}")]
    Timeout { timeout: Duration, rip: u64 },
}

pub(super) fn kvm_err(op: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { op, source }
}

impl VmConfig {
    pub fn validate(&self) -> Result<(), VmError> {
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(VmError::Config(format!("vcpus must be 1..={MAX_VCPUS}, got {}", self.vcpus)));
        }
        let bytes = self
            .mem_mib
            .checked_mul(1 << 20)
            .ok_or_else(|| VmError::Config(format!("memory of {} MiB overflows", self.mem_mib)))?;
        memory::ram_ranges(bytes)?;
        if self.fs.is_some() && self.backing != Backing::Shared {
            return Err(VmError::Config("virtio-fs needs --shared-memory (virtiofsd maps guest RAM)".into()));
        }
        if let Some(v) = &self.vsock {
            // 0-2 are reserved (hypervisor, local, host) and u32::MAX is VMADDR_CID_ANY.
            if v.guest_cid < 3 || v.guest_cid >= u64::from(u32::MAX) {
                return Err(VmError::Config(format!("vsock guest CID must be 3..{}, got {}", u32::MAX, v.guest_cid)));
            }
        }
        Ok(())
    }

    pub fn mem_bytes(&self) -> u64 {
        self.mem_mib << 20
    }
}
