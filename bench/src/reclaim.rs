//! `isola bench density --reclaim MIB`: memory a guest frees going back to the host.
//! A container touches MIB MiB and exits; the sandbox's host PSS (VMM and helpers) is
//! followed until it is back within 10% of where it was before, with the balloon (free
//! page reporting) on and off, one sandbox each, same run.

use std::time::{Duration, Instant};

use isola_sandbox::sandbox::{Sandbox, SandboxOptions};

use crate::container::ContainerBenchConfig;
use crate::error::BenchError;
use crate::memory::ProcMemory;

/// How far above its idle PSS a sandbox may stay and still count as given back.
pub const BACK_WITHIN: f64 = 1.10;
/// Idle time after the agent answers, so boot-time frees are reported first.
const SETTLE: Duration = Duration::from_secs(4);
const POLL: Duration = Duration::from_millis(250);

#[derive(Clone, Debug, serde::Serialize)]
pub struct ReclaimRun {
    pub balloon: bool,
    /// Host PSS of the idle sandbox, before the workload.
    pub idle_kib: u64,
    /// Right after the workload exited.
    pub peak_kib: u64,
    /// At the end of the wait (or when it was back).
    pub after_kib: u64,
    /// From the workload's exit until PSS was within [`BACK_WITHIN`] of idle.
    pub returned_ms: Option<u64>,
    /// From the workload's exit until three quarters of what it touched was back.
    pub three_quarters_ms: Option<u64>,
    /// The guest RAM part of idle and after (the rest is the VMM's own: under TCG its
    /// translation cache grows with the code the guest ran).
    pub idle_guest_kib: u64,
    pub after_guest_kib: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ReclaimBench {
    pub backend: String,
    pub mem_mib: u64,
    pub touched_mib: u64,
    pub wait_ms: u64,
    pub runs: Vec<ReclaimRun>,
}

/// Both modes, balloon on first.
pub fn run(cfg: &ContainerBenchConfig, touched_mib: u64, wait: Duration) -> Result<ReclaimBench, BenchError> {
    if touched_mib + 160 > cfg.boot.mem_mib {
        return Err(BenchError::Failed(format!(
            "touching {touched_mib} MiB needs a VM of at least {} MiB (--memory), not {}",
            touched_mib + 160,
            cfg.boot.mem_mib
        )));
    }
    let runs = [true, false].into_iter().map(|b| one(cfg, b, touched_mib, wait)).collect::<Result<_, _>>()?;
    Ok(ReclaimBench {
        backend: cfg.hypervisor.to_string(),
        mem_mib: cfg.boot.mem_mib,
        touched_mib,
        wait_ms: wait.as_millis() as u64,
        runs,
    })
}

fn one(cfg: &ContainerBenchConfig, balloon: bool, mib: u64, wait: Duration) -> Result<ReclaimRun, BenchError> {
    let name = if balloon { "reclaim-on" } else { "reclaim-off" };
    let mut sb = Sandbox::start(&SandboxOptions { balloon, ..crate::container::options(cfg, name) })?;
    let r = (|| {
        std::thread::sleep(SETTLE);
        let idle = pss(&sb, cfg)?;
        let idle_kib = idle.pss_kib;
        // dd's one buffer of MIB MiB, filled from /dev/zero (every page touched), freed
        // when it exits.
        let bs = format!("bs={}", mib << 20);
        let c = crate::container::container(&sb, cfg, &["dd", "if=/dev/zero", "of=/dev/null", &bs, "count=1"], &[])?;
        c.start()?;
        let status = c.wait()?;
        if status.code != 0 {
            return Err(BenchError::Failed(format!("the workload ended with {status:?}")));
        }
        let exited = Instant::now();
        let peak_kib = pss(&sb, cfg)?.pss_kib;
        let mut after = ProcMemory { pss_kib: peak_kib, ..Default::default() };
        let mut returned_ms = None;
        let mut three_quarters_ms = None;
        while exited.elapsed() < wait {
            after = pss(&sb, cfg)?;
            let after_kib = after.pss_kib;
            let ms = exited.elapsed().as_millis() as u64;
            if three_quarters_ms.is_none() && peak_kib.saturating_sub(after_kib) * 4 >= (mib << 10) * 3 {
                three_quarters_ms = Some(ms);
            }
            if (after_kib as f64) <= idle_kib as f64 * BACK_WITHIN {
                returned_ms = Some(ms);
                break;
            }
            std::thread::sleep(POLL);
        }
        Ok(ReclaimRun {
            balloon,
            idle_kib,
            peak_kib,
            after_kib: after.pss_kib,
            returned_ms,
            three_quarters_ms,
            idle_guest_kib: idle.guest_pss_kib,
            after_guest_kib: after.guest_pss_kib,
        })
    })();
    sb.stop();
    r
}

fn pss(sb: &Sandbox, cfg: &ContainerBenchConfig) -> Result<ProcMemory, BenchError> {
    crate::memory::of_sandbox(sb, cfg.boot.mem_mib)
}
