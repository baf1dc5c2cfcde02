//! The isola guest agent: PID 1 inside the microVM.

pub mod boot_timer;
pub mod init;
pub mod syscall;
