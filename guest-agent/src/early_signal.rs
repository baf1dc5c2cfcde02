//! A signal for a container's init that comes before its program could catch it.
//!
//! The init is PID 1 of its namespace, and the kernel drops a signal sent to such a
//! process unless it has a handler for it. Under runc the program execs within a
//! millisecond of Start; in a VM (under TCG, seconds) CRI's stop right after Start
//! came before the handler and was lost, so the container ran until SIGKILL. Such a
//! signal is kept pending here, one per signal number as the kernel keeps standard
//! signals, and sent once: as soon as the program catches it, when the process ends
//! (then not at all), or when [`WINDOW`] after Start is over (then the kernel drops it,
//! as runc's would have been).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::reaper::Reaper;

/// How long after Start a signal may wait for its handler.
pub const WINDOW: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// (caught, ignored) signal masks from `/proc/<pid>/status` (`SigCgt`, `SigIgn`).
pub fn masks(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    Some((field("SigCgt:")?, field("SigIgn:")?))
}

fn bit(sig: Signal) -> u64 {
    1u64 << ((sig as i32 - 1) & 63)
}

/// Whether `sig` goes now: it cannot be caught (KILL, STOP), the program catches it,
/// or it chose to ignore it (as it meant, the kernel drops it).
pub fn send_now(sig: Signal, caught: u64, ignored: u64) -> bool {
    matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) || (caught | ignored) & bit(sig) != 0
}

fn read_masks(pid: i32) -> Option<(u64, u64)> {
    masks(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The signals pending for one init, and whether a watcher already runs for them.
#[derive(Default)]
pub struct Pending {
    state: Mutex<(u64, bool)>,
}

impl Pending {
    /// Sends `sig` to `pid` now, or keeps it until its handler is there (see the module
    /// doc). `started` is when Start let the program run.
    pub fn signal(self: &Arc<Self>, pid: i32, sig: Signal, started: Instant, reaper: &Arc<Reaper>) -> nix::Result<()> {
        let until = started + WINDOW;
        let now = match read_masks(pid) {
            Some((caught, ignored)) => send_now(sig, caught, ignored) || Instant::now() >= until,
            None => true,
        };
        if now {
            return kill(Pid::from_raw(pid), sig);
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 |= bit(sig);
        if !st.1 {
            st.1 = true;
            let (me, reaper) = (self.clone(), reaper.clone());
            std::thread::spawn(move || me.watch(pid, until, &reaper));
        }
        Ok(())
    }

    /// One thread per init at most: sends each pending signal once its handler is
    /// there, all that are left when the window ends, none once the process is gone.
    fn watch(&self, pid: i32, until: Instant, reaper: &Reaper) {
        loop {
            std::thread::sleep(POLL);
            let gone = reaper.try_get(pid).is_some();
            let masks = read_masks(pid);
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let due = match masks {
                _ if gone => {
                    st.0 = 0;
                    0
                }
                None => 0,
                Some(_) if Instant::now() >= until => st.0,
                Some((caught, ignored)) => st.0 & (caught | ignored),
            };
            st.0 &= !due;
            for n in 1..=64 {
                if due & (1u64 << (n - 1)) != 0 {
                    if let Ok(sig) = Signal::try_from(n) {
                        let _ = kill(Pid::from_raw(pid), sig);
                    }
                }
            }
            if st.0 == 0 || gone || masks.is_none() {
                st.0 = 0;
                st.1 = false;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_come_from_proc_status() {
        let status = "Name:\tsh\nSigQ:\t0/7823\nSigPnd:\t0000000000000000\nSigBlk:\t0000000000000000\n\
                      SigIgn:\t0000000000000004\nSigCgt:\t0000000000004000\n";
        assert_eq!(masks(status), Some((0x4000, 0x4)));
        assert_eq!(masks("Name:\tsh\n"), None);
        assert_eq!(masks("SigCgt:\tzz\nSigIgn:\t0\n"), None);
    }

    #[test]
    fn only_a_signal_without_a_handler_waits() {
        // SIGTERM is 15: bit 14 (0x4000). SIGINT is 2: bit 1 (0x2). SIGQUIT 3: 0x4.
        assert!(send_now(Signal::SIGTERM, 0x4000, 0));
        assert!(!send_now(Signal::SIGTERM, 0x2, 0), "caught SIGINT says nothing of SIGTERM");
        assert!(send_now(Signal::SIGQUIT, 0, 0x4), "an ignored signal goes: the program chose that");
        assert!(send_now(Signal::SIGKILL, 0, 0) && send_now(Signal::SIGSTOP, 0, 0));
        assert!(!send_now(Signal::SIGHUP, 0, 0));
    }

    /// A real process that installs its handler late gets the signal once, then; one
    /// that ends first gets none.
    #[test]
    fn a_pending_signal_reaches_a_late_handler_once() {
        use std::process::Command;
        let reaper = Arc::new(Reaper::default());
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("got");
        let script =
            format!("sleep 0.5; trap 'echo term >> {}; exit 7' TERM; while :; do sleep 0.05; done", out.display());
        let mut child = Command::new("sh").arg("-c").arg(&script).spawn().expect("sh");
        let pid = child.id() as i32;
        // The shell is not PID 1 here, so SIGHUP-less defaults would kill it: the test
        // checks the timing and the count, which do not depend on being an init.
        let pending = Arc::new(Pending::default());
        let t = Instant::now();
        pending.signal(pid, Signal::SIGTERM, Instant::now(), &reaper).expect("kept");
        pending.signal(pid, Signal::SIGTERM, Instant::now(), &reaper).expect("kept, once");
        let st = child.wait().expect("wait");
        assert_eq!(st.code(), Some(7), "the handler ran");
        assert!(t.elapsed() >= Duration::from_millis(400), "not before the handler existed");
        assert_eq!(std::fs::read_to_string(&out).expect("out"), "term\n", "delivered once");
    }
}
