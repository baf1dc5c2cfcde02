//! `containerd-shim-isola-v2`: containerd's shim v2 for isola. One shim process and one
//! microVM per pod (or per `ctr run` container); containerd's Task API is served over
//! ttrpc and carried out by the guest agent.

pub mod boot_request;
pub mod bootstrap;
pub mod bundle;
pub mod error;
pub mod events;
pub mod guest;
pub mod info;
pub mod metrics;
pub mod pod;
pub mod pod_config;
pub mod process;
pub mod rootfs;
pub mod sandbox_api;
pub mod service;
pub mod spec;
pub mod standin;
pub mod stdio;
pub mod task;
pub mod task_v3;
pub mod template_maker;

#[cfg(test)]
mod pod_tests;
