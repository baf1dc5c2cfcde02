//! isola-vmm: a minimal KVM virtual machine monitor built on rust-vmm crates.

pub mod boot;
pub mod confine;
pub mod control;
pub mod devices;
pub mod jail;
pub mod memory;
pub mod snapshot;
pub mod spawner;
pub mod vcpu;
pub mod virtio;
pub mod vm;

pub use vm::{run, Confine, ConsoleOut, FsConfig, NetConfig, VmConfig, VmError, VmReport, VsockConfig};
