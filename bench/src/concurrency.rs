//! `isola bench start --concurrency 1,4,8`: N `isola run … true` started at once, per
//! mode (cold, restored from a template, claimed from the pool): sandboxes per second,
//! each start's wall time (p50/p95/p99), and the host CPU each start cost outside the
//! guest (the CLI, its helpers, `ip`/`nft` calls, VMM setup and device threads; not the
//! vCPU threads), so a large host's throughput can be projected from this one.

use std::path::Path;
use std::time::Instant;

use crate::cpu::{children_cpu_us, VcpuSampler};
use crate::start_run::{finish_run, prepare, spawn_run, stop_pool, RunMode};
use crate::stats::Summary;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ConcurrencyRow {
    pub mode: String,
    /// Starts at once.
    pub n: usize,
    pub succeeded: usize,
    /// From the first spawn until the last run exited.
    pub wall_ms: u64,
    pub per_second: f64,
    /// Each run's wall time from its spawn to its exit, µs.
    pub start_us: Option<Summary>,
    /// CPU of the runs and everything they waited for, per start, µs.
    pub host_cpu_us_per_start: u64,
    /// Of which the guest running (vCPU threads), per start, µs.
    pub vcpu_us_per_start: u64,
    /// The difference: the host's own cost of a start, µs.
    pub outside_guest_us_per_start: u64,
    pub failures: Vec<String>,
}

/// Every `n` of `ns` in every mode: the mode prepared (untimed), then `n` runs at once.
pub fn run(isola: &Path, rootfs: &Path, modes: &[RunMode], ns: &[usize]) -> Vec<ConcurrencyRow> {
    let mut rows = Vec::new();
    for &mode in modes {
        for &n in ns {
            rows.push(match prepare(isola, mode, n) {
                Ok(()) => batch(isola, rootfs, mode, n),
                Err(e) => {
                    ConcurrencyRow { mode: mode.label().into(), n, failures: vec![e.to_string()], ..Default::default() }
                }
            });
        }
    }
    stop_pool(isola, modes);
    rows
}

fn batch(isola: &Path, rootfs: &Path, mode: RunMode, n: usize) -> ConcurrencyRow {
    let sampler = VcpuSampler::start();
    let cpu0 = children_cpu_us();
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let spawned: Vec<_> = (0..n)
        .filter_map(|_| match spawn_run(isola, rootfs, mode) {
            Ok(c) => {
                sampler.watch(c.id() as i32);
                Some((Instant::now(), c))
            }
            Err(e) => {
                failures.push(e.to_string());
                None
            }
        })
        .collect();
    let waits: Vec<_> = spawned
        .into_iter()
        .map(|(at, c)| std::thread::spawn(move || finish_run(c, mode).map(|()| at.elapsed().as_micros() as u64)))
        .collect();
    let mut start_us = Vec::new();
    for w in waits {
        match w.join() {
            Ok(Ok(us)) => start_us.push(us),
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(_) => failures.push("a waiting thread panicked".into()),
        }
    }
    let wall = t0.elapsed();
    let host = children_cpu_us().saturating_sub(cpu0);
    let vcpu = sampler.finish();
    let per = |v: u64| v / n.max(1) as u64;
    ConcurrencyRow {
        mode: mode.label().into(),
        n,
        succeeded: start_us.len(),
        wall_ms: wall.as_millis() as u64,
        per_second: start_us.len() as f64 / wall.as_secs_f64().max(1e-9),
        start_us: Summary::of(&start_us),
        host_cpu_us_per_start: per(host),
        vcpu_us_per_start: per(vcpu),
        outside_guest_us_per_start: per(host.saturating_sub(vcpu)),
        failures,
    }
}

/// The table `isola bench start --concurrency` prints.
pub fn table(rows: &[ConcurrencyRow]) -> String {
    let mut s = format!(
        "{:<14} {:>3} {:>4} {:>9} {:>8} {:>9} {:>9} {:>9} {:>11} {:>9}\n",
        "mode", "n", "ok", "wall ms", "per s", "p50 ms", "p95 ms", "p99 ms", "host CPU ms", "outside"
    );
    for r in rows {
        let q = |f: fn(&Summary) -> u64| {
            r.start_us.as_ref().map_or("-".to_string(), |s| format!("{:.0}", f(s) as f64 / 1000.0))
        };
        s += &format!(
            "{:<14} {:>3} {:>4} {:>9} {:>8.2} {:>9} {:>9} {:>9} {:>11.0} {:>9.0}\n",
            r.mode,
            r.n,
            r.succeeded,
            r.wall_ms,
            r.per_second,
            q(|s| s.p50),
            q(|s| s.p95),
            q(|s| s.p99),
            r.host_cpu_us_per_start as f64 / 1000.0,
            r.outside_guest_us_per_start as f64 / 1000.0
        );
        for f in &r.failures {
            s += &format!("  FAILED {f}\n");
        }
    }
    s
}
