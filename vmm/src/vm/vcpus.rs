//! The vCPU threads from start to the VM's verdict: a reset, a stop asked through the
//! control API, a vCPU that fails, or the timeout; then every vCPU kicked out and
//! joined.

use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::VmError;
use crate::devices::VmEvent;
use crate::vcpu::{Vcpu, VcpuError, VcpuOutcome, VcpuShared};

/// Prints a machine-readable milestone on stderr: `isola-vmm: event=<name> us=<micros>`.
pub fn log_event(name: &str, at: Duration) {
    eprintln!("isola-vmm: event={name} us={}", at.as_micros());
}

enum ThreadMsg {
    Done(u8, VcpuOutcome),
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

pub(super) fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

pub(super) fn run_vcpus(
    vcpus: Vec<Vcpu>,
    shared: &VcpuShared,
    events: &Receiver<VmEvent>,
    timeout: Option<Duration>,
    start: Instant,
) -> Result<(Vec<Duration>, Duration), VmError> {
    // A no-op handler so the kick signal interrupts KVM_RUN (EINTR) instead of killing us.
    vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
        .map_err(|e| VmError::Setup { what: "kick signal handler", source: e.into() })?;
    let (done_tx, done_rx) = channel();
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    for mut vcpu in vcpus {
        let tx = done_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("vcpu{}", vcpu.id))
            .spawn(move || {
                let outcome = match crate::confine::enter_thread(crate::confine::ThreadKind::Vcpu) {
                    Ok(()) => vcpu.run(),
                    Err(e) => VcpuOutcome::Failed(VcpuError::Confine(e)),
                };
                let _ = tx.send(ThreadMsg::Done(vcpu.id, outcome));
            })
            .map_err(|source| VmError::Setup { what: "spawn vcpu thread", source })?;
        handles.push(h);
    }
    drop(done_tx);
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut boot_times = Vec::new();
    let mut reported = 0usize;
    let verdict: Result<Duration, VmError> = loop {
        let wait = deadline.map_or(Duration::from_millis(50), |d| {
            d.saturating_duration_since(Instant::now()).min(Duration::from_millis(50))
        });
        match events.recv_timeout(wait) {
            Ok(VmEvent::BootTimer(d)) => {
                log_event("boot_timer", d);
                boot_times.push(d);
                continue;
            }
            Ok(VmEvent::Reset) | Ok(VmEvent::Stop) => break Ok(start.elapsed()),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        match done_rx.try_recv() {
            Ok(ThreadMsg::Done(_, VcpuOutcome::Failed(e))) => {
                reported += 1;
                break Err(e.into());
            }
            Ok(ThreadMsg::Done(..)) => reported += 1,
            Err(_) => {}
        }
        if let (Some(d), Some(t)) = (deadline, timeout) {
            if Instant::now() >= d {
                break Err(VmError::Timeout { timeout: t, rip: 0 });
            }
        }
    };
    // Drain boot-timer events raced with the reset.
    while let Ok(ev) = events.try_recv() {
        if let VmEvent::BootTimer(d) = ev {
            log_event("boot_timer", d);
            boot_times.push(d);
        }
    }
    let stopped_rip = stop_vcpus(shared, &handles, handles.len() - reported, &done_rx);
    for h in handles {
        let _ = h.join();
    }
    let exited = verdict.map_err(|e| match e {
        VmError::Timeout { timeout, .. } => VmError::Timeout { timeout, rip: stopped_rip.unwrap_or(0) },
        other => other,
    })?;
    log_event("vmm_exit", exited);
    Ok((boot_times, exited))
}

/// Asks every vCPU to stop, kicking it out of KVM_RUN until it reports. Returns
/// vCPU 0's last RIP when it reported one.
fn stop_vcpus(
    shared: &VcpuShared,
    handles: &[JoinHandle<()>],
    mut remaining: usize,
    done: &Receiver<ThreadMsg>,
) -> Option<u64> {
    shared.stop.store(true, Ordering::Release);
    let mut rip0 = None;
    let give_up = Instant::now() + Duration::from_secs(5);
    while remaining > 0 && Instant::now() < give_up {
        for h in handles {
            // SAFETY: the pthread handle belongs to a thread we spawned and have not joined,
            // and the signal has a no-op handler installed.
            unsafe { libc::pthread_kill(h.as_pthread_t(), kick_signal()) };
        }
        while let Ok(ThreadMsg::Done(id, outcome)) = done.recv_timeout(Duration::from_millis(20)) {
            remaining = remaining.saturating_sub(1);
            if let (0, VcpuOutcome::Stopped { rip }) = (id, &outcome) {
                rip0 = Some(*rip);
            }
            if remaining == 0 {
                break;
            }
        }
    }
    rip0
}
