//! `containerd-shim-isola-v2`: containerd's shim v2 for isola. One shim process and one
//! microVM per pod (or per `ctr run` container). This crate is the containerd adapter:
//! it serves containerd's Task API (v2 and v3) and sandbox API over ttrpc, and maps
//! them onto the task engine ([`isola_task`]), its events and its errors.

pub mod bootstrap;
pub mod error;
pub mod events;
pub mod info;
pub mod metrics;
pub mod pod_config;
pub mod runtime_options;
pub mod sandbox_api;
pub mod service;
pub mod task;
pub mod task_v3;
