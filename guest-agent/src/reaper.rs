//! Reaps every child (the agent is PID 1, or a subreaper on the host) and keeps exit
//! statuses for whoever waits on a pid.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

#[derive(Default)]
pub struct Reaper {
    exited: Mutex<HashMap<i32, Exit>>,
    cond: Condvar,
}

impl Reaper {
    /// Starts the reaping thread.
    pub fn start() -> Arc<Self> {
        let r = Arc::new(Self::default());
        let me = r.clone();
        std::thread::spawn(move || me.reap_forever());
        r
    }

    fn reap_forever(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), None) {
                Ok(WaitStatus::Exited(pid, code)) => self.record(pid.as_raw(), Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => self.record(pid.as_raw(), Exit::Signal(sig as i32)),
                Ok(_) => {}
                // No children right now: look again shortly.
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    pub fn record(&self, pid: i32, exit: Exit) {
        let mut m = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(pid, exit);
        self.cond.notify_all();
    }

    pub fn try_get(&self, pid: i32) -> Option<Exit> {
        self.exited.lock().unwrap_or_else(|e| e.into_inner()).get(&pid).copied()
    }

    /// Blocks until `pid` has exited (or `timeout` passes).
    pub fn wait(&self, pid: i32, timeout: Option<Duration>) -> Option<Exit> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut m = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(e) = m.get(&pid) {
                return Some(*e);
            }
            m = match deadline {
                None => self.cond.wait(m).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.cond.wait_timeout(m, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    /// Forgets a pid once nobody will ask again (container deleted).
    pub fn forget(&self, pid: i32) {
        self.exited.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_see_recorded_exits_and_time_out_otherwise() {
        let r = Arc::new(Reaper::default());
        let r2 = r.clone();
        let t = std::thread::spawn(move || r2.wait(7, None));
        std::thread::sleep(Duration::from_millis(20));
        r.record(7, Exit::Signal(9));
        assert_eq!(t.join().expect("join"), Some(Exit::Signal(9)));
        assert_eq!(r.wait(8, Some(Duration::from_millis(10))), None);
        r.forget(7);
        assert_eq!(r.try_get(7), None);
    }
}
