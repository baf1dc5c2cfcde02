//! isola's task engine: one pod's VM, its containers and their processes, as both
//! adapters drive them — the containerd shim (`containerd-shim-isola-v2`) and the runc
//! command line (`isola-runtime`). It knows no containerd type: times are `SystemTime`,
//! errors are [`error::TaskError`], events go to an [`event::EventSink`].

pub mod boot_request;
pub mod bundle;
pub mod error;
pub mod event;
pub mod guest;
pub mod pod;
pub mod pod_config;
pub mod process;
pub mod rootfs;
pub mod spec;
pub mod standin;
pub mod stdio;
pub mod template_maker;

#[cfg(test)]
mod pod_tests;
