//! Ends a sandbox as soon as one of its processes dies: the others are killed at once,
//! so no agent call waits out its deadline on a guest that can no longer answer (a
//! guest whose virtiofsd died blocks in its filesystem for ever), and the first death
//! is kept so the error can name it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How often the processes are looked at: well under any agent call's deadline.
const POLL: Duration = Duration::from_millis(50);

/// One watched process: our own child, so its pid cannot be reused before we reap it.
#[derive(Clone, Debug)]
pub struct Watched {
    pub pid: i32,
    pub what: String,
    pub log: PathBuf,
}

/// The first process of the sandbox that ended on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Death {
    pub what: String,
    pub status: String,
    pub log: PathBuf,
}

pub struct Watchdog {
    disarmed: Arc<AtomicBool>,
    first: Arc<Mutex<Option<Death>>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn start(procs: Vec<Watched>) -> std::io::Result<Self> {
        let disarmed = Arc::new(AtomicBool::new(false));
        let first = Arc::new(Mutex::new(None));
        let (d, f) = (disarmed.clone(), first.clone());
        let thread = std::thread::Builder::new().name("sandbox-watchdog".into()).spawn(move || {
            while !d.load(Ordering::Acquire) {
                if let Some((i, status)) =
                    procs.iter().enumerate().find_map(|(i, p)| exit_status(p.pid).map(|s| (i, s)))
                {
                    if d.load(Ordering::Acquire) {
                        return;
                    }
                    let p = &procs[i];
                    *f.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Death { what: p.what.clone(), status, log: p.log.clone() });
                    log::warn!("{} exited; stopping the rest of the sandbox", p.what);
                    for other in procs.iter().filter(|o| o.pid != p.pid) {
                        let _ = kill(Pid::from_raw(other.pid), Signal::SIGKILL);
                    }
                    return;
                }
                std::thread::sleep(POLL);
            }
        })?;
        Ok(Self { disarmed, first, thread: Some(thread) })
    }

    /// The process that died first, if one did.
    pub fn death(&self) -> Option<Death> {
        self.first.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stops watching (before the sandbox stops its processes itself).
    pub fn disarm(&mut self) {
        self.disarmed.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// How `pid` (a child of ours) ended, without reaping it; None while it runs.
fn exit_status(pid: i32) -> Option<String> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(Pid::from_raw(pid)), flags) {
        Ok(WaitStatus::Exited(_, code)) => Some(format!("exit status: {code}")),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(format!("signal: {} ({sig})", sig as i32)),
        // Gone already (reaped elsewhere) counts as ended too.
        Err(nix::errno::Errno::ECHILD) => Some("ended".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Instant;

    /// `cmd` as the child itself (exec: a kill reaches it, not a shell above it), with
    /// no hold on the test's output (a leaked child would keep `cargo test | tee` open).
    fn child(cmd: &str) -> std::process::Child {
        use std::process::Stdio;
        Command::new("sh")
            .args(["-c", &format!("exec {cmd}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh")
    }

    #[test]
    fn the_first_death_is_named_and_the_others_are_killed() {
        let mut helper = child("sleep 0.2");
        let mut vmm = child("sleep 600");
        let w = Watchdog::start(vec![
            Watched { pid: helper.id() as i32, what: "virtiofsd".into(), log: "fs.log".into() },
            Watched { pid: vmm.id() as i32, what: "isola-vmm".into(), log: "vmm.log".into() },
        ])
        .expect("watchdog");
        let started = Instant::now();
        let status = vmm.wait().expect("the vmm ends");
        assert!(started.elapsed() < Duration::from_secs(10), "killed, not waited out");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        let d = w.death().expect("a death");
        assert_eq!((d.what.as_str(), d.status.as_str()), ("virtiofsd", "exit status: 0"));
        assert!(helper.try_wait().expect("wait").is_some(), "not reaped by the watchdog, but ended");
    }

    #[test]
    fn a_disarmed_watchdog_ignores_what_ends_afterwards() {
        let mut a = child("sleep 600");
        let mut b = child("sleep 600");
        let mut w = Watchdog::start(vec![
            Watched { pid: a.id() as i32, what: "a".into(), log: "a.log".into() },
            Watched { pid: b.id() as i32, what: "b".into(), log: "b.log".into() },
        ])
        .expect("watchdog");
        w.disarm();
        a.kill().expect("kill a");
        a.wait().expect("reap a");
        std::thread::sleep(POLL * 4);
        assert_eq!(w.death(), None);
        assert!(b.try_wait().expect("wait").is_none(), "b still runs");
        b.kill().expect("kill b");
        b.wait().expect("reap b");
    }
}
