//! Starting a keeper or an exec relay: this binary again, with the caller's stdio and
//! a pipe on fd 3 on which the child says `ok PID` or `error TEXT` once it is ready.

use std::io::{BufRead, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use crate::error::RuntimeError;
use crate::keeper::READY_FD;

/// The child and the pid it reported; the caller keeps or forgets the child.
pub fn spawn_ready(mut cmd: Command, what: &str) -> Result<(Child, i32), RuntimeError> {
    let (r, w): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Keeper(format!("pipe: {e}")))?;
    let wfd = w.as_raw_fd();
    // SAFETY: dup2/fcntl are async-signal-safe; `wfd` stays open until the spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if wfd == READY_FD {
                // dup2 onto itself would keep close-on-exec.
                libc::fcntl(wfd, libc::F_SETFD, 0);
            } else if libc::dup2(wfd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| RuntimeError::Keeper(format!("starting the {what}: {e}")))?;
    drop(w);
    // One line: whatever else inherited the pipe cannot hold this up.
    let mut msg = String::new();
    let _ = std::io::BufReader::new(std::fs::File::from(r).take(64 * 1024)).read_line(&mut msg);
    let msg = msg.trim();
    if let Some(pid) = msg.strip_prefix("ok ").and_then(|p| p.parse().ok()) {
        return Ok((child, pid));
    }
    let _ = child.wait();
    Err(RuntimeError::Keeper(match msg.strip_prefix("error ") {
        Some(e) => e.to_string(),
        None => format!("the {what} exited before it was ready"),
    }))
}

/// This binary again, doing `job` ([`isola_sandbox::background`]).
pub fn this<J: isola_sandbox::background::Job>(job: &J) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let mut c = isola_sandbox::background::command(exe, job);
    c.arg0("isola-runtime");
    c
}

/// Writes `pid` to `path` as runc does (no newline), through a rename.
pub fn write_pid_file(path: &std::path::Path, pid: i32) -> Result<(), RuntimeError> {
    isola_sandbox::files::write_atomic(path, pid.to_string().as_bytes()).map_err(crate::error::io("writing", path))
}
