//! The isola guest agent: PID 1 inside the microVM.

pub mod boot_timer;
pub mod config;
pub mod init;
pub mod setup;
pub mod syscall;
