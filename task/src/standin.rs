//! A host process per task process, whose pid is the one containerd and kubelet see.
//! The guest's pids mean nothing on the host, and the VMM lives as long as the pod, so
//! each container process gets a small stand-in (as gVisor's and Kata 1.x's shims did):
//! it starts with the process (at Create or Exec), does nothing, and ends when the
//! process has exited (the shim closes its stdin), or when the shim dies.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::error::TaskError;

/// The name stand-ins show in `ps` (their argv[0]).
pub const NAME: &str = "isola-task";

/// A stand-in's job ([`isola_sandbox::background`]): the task and process it stands
/// for, so `ps` names them.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StandInJob {
    pub task: Vec<String>,
}

impl isola_sandbox::background::Job for StandInJob {
    const NAME: &'static str = "stand-in";
}

/// How to start a stand-in: the adapter's binary itself (the shim or isola-runtime),
/// or any program that runs until its stdin closes (tests use `cat`).
#[derive(Clone, Debug)]
pub enum StandInCommand {
    ThisBinary(PathBuf),
    Program { program: PathBuf, args: Vec<String> },
}

impl StandInCommand {
    /// This binary, as `isola-task __isola stand-in {"task":[…]}`.
    pub fn this_binary() -> Self {
        StandInCommand::ThisBinary(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")))
    }
}

pub struct StandIn {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl StandIn {
    /// `task` names it in `ps` (`isola-task __isola stand-in {"task":["c1","exec1"]}`).
    pub fn spawn(cmd: &StandInCommand, task: &[&str]) -> Result<Self, TaskError> {
        use std::os::unix::process::CommandExt;
        let mut c = match cmd {
            StandInCommand::ThisBinary(exe) => {
                let job = StandInJob { task: task.iter().map(|t| t.to_string()).collect() };
                isola_sandbox::background::command(exe, &job)
            }
            StandInCommand::Program { program, args } => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
        };
        c.arg0(NAME).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = c.spawn().map_err(crate::error::io("starting the task's host stand-in"))?;
        let stdin = child.stdin.take();
        Ok(StandIn { child, stdin })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for StandIn {
    /// EOF on its stdin ends it; it is our child, so it is reaped here.
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stand-in's whole life: wait for EOF, then exit.
pub fn serve(_: StandInJob) -> i32 {
    let mut sink = [0u8; 64];
    while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stand_in_lives_until_dropped_and_is_reaped() {
        let cmd = StandInCommand::Program { program: "cat".into(), args: vec![] };
        let s = StandIn::spawn(&cmd, &[]).expect("spawn");
        let pid = s.pid() as i32;
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "alive while the process runs");
        drop(s);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "gone and reaped once it exited");
    }
}

#[cfg(test)]
mod inventory_tests {
    #[test]
    fn a_leaked_stand_in_is_seen_by_the_leak_check() {
        assert!(isola_sandbox::inventory::is_ours(super::NAME));
    }
}
