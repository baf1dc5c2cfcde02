//! Host side of an isola sandbox: picks a hypervisor backend, starts it and its helper
//! programs, watches the guest boot, and runs containers in it through the agent.

pub mod agent;
pub mod assets;
pub mod backend;
pub mod background;
pub mod beneath;
pub mod boot;
pub mod cgroup;
pub mod cmd;
pub mod config;
pub mod container;
#[cfg(test)]
mod container_tests;
pub mod disk;
pub mod features;
pub mod files;
pub mod host;
pub mod hypervisor;
pub mod identity;
pub mod inventory;
pub mod limits_cgroup;
pub mod mounts;
pub mod names;
pub mod net;
pub mod netfilter;
pub mod netns;
pub mod options;
pub mod placement;
pub mod pool;
pub mod procfs;
pub mod sandbox;
pub mod seccomp;
pub mod signal;
pub mod spec;
pub mod state;
pub mod stdio;
pub mod template;
pub mod volume;
pub mod watchdog;

pub use boot::{boot, BootReport, Phase};
pub use container::{Container, ContainerError, ProcessHandle, Rootfs, Streams};
pub use host::{detect_kvm, KvmKind};
pub use hypervisor::{choose, BootSpec, HypervisorKind, QemuAccel};
/// What the agent reports, as callers of this crate see it.
pub use isola_protocol::{
    client::ClientError, ContainerInfo, ContainerStats, ContainerStatus, ExitStatus, StdioStream, READY_MARKER,
};
