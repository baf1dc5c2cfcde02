//! `isola-agent init-helper CONFIG`: a fresh single-threaded process that joins the
//! cgroup, enters namespaces and forks the container process (PID 1 of a new PID
//! namespace, or a process joining one). It reports on fd 4 and exits; the container
//! process is then reparented to the agent (PID 1 / subreaper), which reaps it.
//!
//! The fds it is handed and what it reports on them: `report.rs`.

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;

use nix::unistd::{fork, ForkResult};

use crate::config::InitConfig;
use crate::report::{fail, say, REPORT_FD, START_FD};
use crate::setup;
use crate::syscall::Linux;

pub fn run(config_path: &str) -> ! {
    // SAFETY: the agent set up fds 3 and 4 (start and report pipes) for this process
    // before exec; nothing else in this fresh process owns them.
    let mut report = unsafe { File::from_raw_fd(REPORT_FD) };
    // SAFETY: as above, for the start pipe.
    let mut start = unsafe { File::from_raw_fd(START_FD) };
    let cfg: InitConfig = match std::fs::read(config_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => fail(&mut report, 1, format!("reading {config_path}: {e}")),
    };
    if let Err(e) = setup::enter(&Linux, &cfg) {
        fail(&mut report, 1, e);
    }
    // SAFETY: this process is single-threaded (a fresh exec of the agent binary that has
    // started no threads), so the child may run arbitrary code.
    match unsafe { fork() } {
        Err(e) => fail(&mut report, 1, format!("fork: {e}")),
        Ok(ForkResult::Parent { child }) => {
            say(&mut report, &format!("pid {child}"));
            std::process::exit(0)
        }
        Ok(ForkResult::Child) => {
            let mut go = || {
                say(&mut report, "ready");
                let mut b = [0u8; 1];
                if !matches!(start.read(&mut b), Ok(1)) {
                    // Deleted before start: leave quietly.
                    std::process::exit(0);
                }
            };
            if let Err(e) = setup::prepare(&Linux, &cfg, &mut go) {
                fail(&mut report, 126, e);
            }
            drop(start);
            // A successful exec closes the report pipe; the agent reads EOF as success.
            let _ = nix::fcntl::fcntl(REPORT_FD, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
            let err = setup::exec(&Linux, &cfg.process);
            let code = if matches!(err, crate::syscall::SyscallError::Exec { source: nix::Error::ENOENT, .. }) {
                127
            } else {
                126
            };
            fail(&mut report, code, err)
        }
    }
}
