//! Host side of an isola sandbox: picks a hypervisor backend, starts it, and
//! watches the guest boot.

pub mod assets;
pub mod boot;
pub mod host;
pub mod hypervisor;

pub use boot::{boot, BootReport, Phase};
pub use host::{detect_kvm, KvmKind};
pub use hypervisor::{choose, BootSpec, HypervisorKind, QemuAccel};
