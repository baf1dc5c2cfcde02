//! Snapshots: a directory holding `vm.snap` (a checked header, then the VM's state:
//! every vCPU, the in-kernel irqchip, PIT and clock, the devices) and `memory` (guest
//! RAM, zero pages left as holes). Restore maps `memory` copy-on-write, so clones share
//! the pages none of them wrote. Both are encoded with serde + bincode; the header is
//! checked in full before any state is used, so a snapshot from another format, VMM
//! version, KVM or machine shape is refused, never half-loaded.

mod files;

use std::path::{Path, PathBuf};

use kvm_bindings::{kvm_clock_data, kvm_irqchip, kvm_pit_state2};
use serde::{Deserialize, Serialize};

use crate::devices::SerialSnapshot;
use crate::vcpu::state::VcpuState;

pub use files::{load, save, SaveReport, SnapshotTarget};

pub const MAGIC: [u8; 8] = *b"ISOLASNP";
/// Raised whenever the encoding of [`VmState`] changes.
pub const FORMAT_VERSION: u32 = 2;
pub const STATE_FILE: &str = "vm.snap";
pub const MEMORY_FILE: &str = "memory";
/// Largest header and state we read (a vCPU's state is about 8 KiB).
pub const MAX_HEADER_BYTES: usize = 64 << 10;
pub const MAX_STATE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{what} {}: {source}", .path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{} is not an isola-vmm snapshot (bad magic)", .path.display())]
    NotASnapshot { path: PathBuf },
    #[error("{}: {what} is {found}, this isola-vmm needs {want}", .path.display())]
    Mismatch { path: PathBuf, what: &'static str, found: String, want: String },
    #[error("{}: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("snapshot of {0} is not supported yet")]
    Unsupported(String),
    #[error("the snapshot has devices [{snapshot}], this VM [{config}]: restore with the same devices")]
    Devices { snapshot: String, config: String },
    #[error("guest memory: {0}")]
    Memory(String),
}

impl SnapshotError {
    fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        SnapshotError::Corrupt { path: path.to_path_buf(), reason: reason.into() }
    }
}

/// What a snapshot was taken of; a restore must match it exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub magic: [u8; 8],
    pub format: u32,
    pub vmm_version: String,
    pub kvm_api: i32,
    pub mem_bytes: u64,
    pub vcpus: u8,
    /// Virtio devices in slot order ("vsock"; net and fs cannot be snapshotted yet).
    pub devices: Vec<String>,
    pub state_len: u64,
    pub state_sha256: [u8; 32],
}

impl Header {
    /// A header for this VMM and KVM, to be completed with the state's length and hash.
    pub fn new(kvm_api: i32, mem_bytes: u64, vcpus: u8, devices: Vec<String>) -> Self {
        Header {
            magic: MAGIC,
            format: FORMAT_VERSION,
            vmm_version: env!("CARGO_PKG_VERSION").to_string(),
            kvm_api,
            mem_bytes,
            vcpus,
            devices,
            state_len: 0,
            state_sha256: [0; 32],
        }
    }

    /// Checks everything but the state's hash against this VMM and `kvm_api`.
    pub fn check(&self, path: &Path, kvm_api: i32) -> Result<(), SnapshotError> {
        if self.magic != MAGIC {
            return Err(SnapshotError::NotASnapshot { path: path.to_path_buf() });
        }
        let mismatch = |what, found: String, want: String| {
            Err(SnapshotError::Mismatch { path: path.to_path_buf(), what, found, want })
        };
        if self.format != FORMAT_VERSION {
            return mismatch("the format version", self.format.to_string(), FORMAT_VERSION.to_string());
        }
        if self.vmm_version != env!("CARGO_PKG_VERSION") {
            return mismatch("the isola-vmm version", self.vmm_version.clone(), env!("CARGO_PKG_VERSION").into());
        }
        if self.kvm_api != kvm_api {
            return mismatch("the KVM API version", self.kvm_api.to_string(), kvm_api.to_string());
        }
        crate::memory::ram_ranges(self.mem_bytes).map_err(|e| SnapshotError::corrupt(path, e.to_string()))?;
        if self.vcpus == 0 || self.vcpus > crate::vcpu::MAX_VCPUS {
            return Err(SnapshotError::corrupt(path, format!("{} vCPUs", self.vcpus)));
        }
        if self.state_len as usize > MAX_STATE_BYTES {
            return Err(SnapshotError::corrupt(path, format!("a state of {} bytes", self.state_len)));
        }
        Ok(())
    }
}

/// The VM besides its memory.
#[derive(Serialize, Deserialize)]
pub struct VmState {
    pub vcpus: Vec<VcpuState>,
    /// PIC master, PIC slave, IO-APIC.
    pub irqchips: Vec<kvm_irqchip>,
    pub pit: kvm_pit_state2,
    pub clock: kvm_clock_data,
    pub serial: SerialSnapshot,
    /// Milestones the VM had recorded (for the record: a restored VM counts afresh).
    pub boot_timer_fired: usize,
    /// Each virtio-mmio transport, in slot order.
    pub virtio: Vec<crate::virtio::snapshot::TransportSnapshot>,
}

#[cfg(test)]
mod tests;
