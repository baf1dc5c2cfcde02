//! The isola guest agent: PID 1 inside the microVM. It runs OCI containers on the
//! host's behalf: rootfs, namespaces, cgroups, stdio, exit statuses.

pub mod agent;
pub mod boot_timer;
pub mod cgroup;
pub mod config;
pub mod early_signal;
pub mod helper;
#[cfg(test)]
mod in_root_tests;
pub mod init;
pub mod log;
pub mod net;
pub mod process;
pub mod reaper;
pub mod recording;
pub mod report;
pub mod rootfs;
pub mod seccomp;
pub mod server;
pub mod setup;
pub mod stdio;
pub mod switch_root;
pub mod syscall;
