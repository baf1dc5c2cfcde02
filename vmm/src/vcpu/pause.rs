//! Pausing every vCPU at once for the control API: each vCPU thread parks at its next
//! exit (kicked out of KVM_RUN by a signal), reads its own state when asked, and runs
//! again on resume. KVM's vCPU ioctls are made only from the vCPU's own thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::state::VcpuState;

/// How long a pause waits for every vCPU to park.
const PARK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("{parked} of {vcpus} vCPUs parked within {PARK_TIMEOUT:?}")]
    NotParked { parked: usize, vcpus: usize },
    #[error("the VM is not paused")]
    NotPaused,
    #[error("vCPU {id}: {source}")]
    Capture { id: usize, source: super::VcpuError },
    #[error("pause state poisoned")]
    Poisoned,
}

#[derive(Default)]
struct Inner {
    /// vCPU threads (for the kick), by id.
    threads: Vec<Option<libc::pthread_t>>,
    parked: usize,
    /// Raised once per capture request; each vCPU answers it once.
    capture_gen: u64,
    answered: Vec<u64>,
    captured: Vec<Option<Result<VcpuState, super::VcpuError>>>,
}

pub struct PauseGate {
    requested: AtomicBool,
    vcpus: usize,
    signal: libc::c_int,
    inner: Mutex<Inner>,
    cv: Condvar,
}

impl PauseGate {
    /// A gate for `vcpus` vCPUs, kicked with `signal` (which has a no-op handler).
    pub fn new(vcpus: usize, signal: libc::c_int) -> Self {
        let inner = Inner {
            threads: vec![None; vcpus],
            answered: vec![0; vcpus],
            captured: (0..vcpus).map(|_| None).collect(),
            ..Default::default()
        };
        Self { requested: AtomicBool::new(false), vcpus, signal, inner: Mutex::new(inner), cv: Condvar::new() }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, PauseError> {
        self.inner.lock().map_err(|_| PauseError::Poisoned)
    }

    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Called on each vCPU thread before it first enters the guest.
    pub fn register_current_thread(&self, id: u8) {
        if let Ok(mut g) = self.lock() {
            if let Some(slot) = g.threads.get_mut(usize::from(id)) {
                // SAFETY: pthread_self has no preconditions.
                *slot = Some(unsafe { libc::pthread_self() });
            }
        }
    }

    fn kick_all(&self, g: &Inner) {
        for t in g.threads.iter().flatten() {
            // SAFETY: the handle is a vCPU thread of this process, alive until the VM
            // stops (run_vcpus joins them only after the control API is done), and
            // the signal has a no-op handler.
            unsafe { libc::pthread_kill(*t, self.signal) };
        }
    }

    /// Parks every vCPU; returns once all are out of KVM_RUN.
    pub fn pause(&self) -> Result<(), PauseError> {
        self.requested.store(true, Ordering::Release);
        let until = Instant::now() + PARK_TIMEOUT;
        let mut g = self.lock()?;
        while g.parked < self.vcpus {
            if Instant::now() > until {
                let parked = g.parked;
                drop(g);
                self.resume()?;
                return Err(PauseError::NotParked { parked, vcpus: self.vcpus });
            }
            self.kick_all(&g);
            g = self.cv.wait_timeout(g, Duration::from_millis(10)).map_err(|_| PauseError::Poisoned)?.0;
        }
        Ok(())
    }

    /// Every vCPU's state, read by each vCPU thread; the VM must be paused.
    pub fn capture(&self) -> Result<Vec<VcpuState>, PauseError> {
        let mut g = self.lock()?;
        if !self.requested() || g.parked < self.vcpus {
            return Err(PauseError::NotPaused);
        }
        g.capture_gen += 1;
        g.captured.iter_mut().for_each(|c| *c = None);
        self.cv.notify_all();
        while g.captured.iter().any(Option::is_none) {
            g = self.cv.wait(g).map_err(|_| PauseError::Poisoned)?;
        }
        g.captured
            .iter_mut()
            .enumerate()
            .map(|(id, c)| match c.take() {
                Some(Ok(s)) => Ok(s),
                Some(Err(source)) => Err(PauseError::Capture { id, source }),
                None => Err(PauseError::NotPaused),
            })
            .collect()
    }

    /// Lets every vCPU run again.
    pub fn resume(&self) -> Result<(), PauseError> {
        let g = self.lock()?;
        self.requested.store(false, Ordering::Release);
        self.cv.notify_all();
        drop(g);
        Ok(())
    }

    /// A vCPU thread's side: parked until resumed or the VM stops, answering
    /// capture requests with `capture`.
    pub fn park(&self, id: u8, stop: &AtomicBool, capture: impl Fn() -> Result<VcpuState, super::VcpuError>) {
        let id = usize::from(id);
        let Ok(mut g) = self.lock() else { return };
        g.parked += 1;
        self.cv.notify_all();
        while self.requested() && !stop.load(Ordering::Acquire) {
            if g.answered.get(id).is_some_and(|a| *a < g.capture_gen) {
                let r = capture();
                g.answered[id] = g.capture_gen;
                if let Some(slot) = g.captured.get_mut(id) {
                    *slot = Some(r);
                }
                self.cv.notify_all();
                continue;
            }
            g = match self.cv.wait_timeout(g, Duration::from_millis(50)) {
                Ok((g, _)) => g,
                Err(_) => return,
            };
        }
        g.parked -= 1;
        self.cv.notify_all();
    }
}
