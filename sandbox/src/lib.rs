//! Host side of an isola sandbox: picks a hypervisor backend, starts it, and
//! watches the guest boot.

pub mod assets;
pub mod boot;
pub mod config;
pub mod container;
pub mod host;
pub mod hypervisor;
pub mod mounts;
pub mod net;
pub mod netns;
pub mod sandbox;
pub mod state;

pub use boot::{boot, BootReport, Phase};
pub use host::{detect_kvm, KvmKind};
pub use hypervisor::{choose, BootSpec, HypervisorKind, QemuAccel};
