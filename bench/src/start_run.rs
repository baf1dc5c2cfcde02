//! The container half of `isola bench start`: `isola run … true` cold, restored from a
//! template (isola-vmm) and taking a sandbox from the warm pool (`isola pool`), on this
//! host's backend, the same run in each mode.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{io, BenchError};
use crate::start::{ModeSeries, WAIT};
use crate::stats::Summary;

/// How `isola run` gets its sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Booted (no pool, no template).
    Cold,
    /// Restored from the configuration's template (isola-vmm).
    Snapshot,
    /// Claimed from the warm pool.
    Pool,
}

impl std::str::FromStr for RunMode {
    type Err = String;
    /// As `--mode` takes it.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cold" => Ok(RunMode::Cold),
            "snapshot" => Ok(RunMode::Snapshot),
            "pool" => Ok(RunMode::Pool),
            other => Err(format!("--mode takes cold, snapshot or pool, not {other:?}")),
        }
    }
}

impl RunMode {
    fn name(self) -> &'static str {
        match self {
            RunMode::Cold => "run cold",
            RunMode::Snapshot => "run snapshot",
            RunMode::Pool => "run pool",
        }
    }
}

/// `isola run … true` in each of `modes`, alternating; wall time from spawn to exit,
/// µs. What a mode needs is made first, untimed: the pool filled and a ready member
/// waited for, the template made (a no-op once it is).
pub fn run_container_modes(isola: &Path, rootfs: &Path, runs: usize, modes: &[RunMode]) -> Vec<ModeSeries> {
    let state_root = isola_sandbox::state::default_root();
    let run = |mode: RunMode| -> Result<u64, BenchError> {
        let mut c = Command::new(isola);
        c.args(["run", "--network", "none", "--rootfs"]).arg(rootfs);
        match mode {
            RunMode::Cold => c.args(["--no-pool", "--no-template"]),
            RunMode::Snapshot => c.arg("--no-pool"),
            RunMode::Pool => c.arg("--no-template"),
        };
        c.args(["--", "true"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let t = Instant::now();
        let out = c.output().map_err(io("isola run"))?;
        let us = t.elapsed().as_micros() as u64;
        if !out.status.success() {
            return Err(BenchError::Failed(format!("isola run: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        // A restore that failed falls back to a cold boot and says so: not a snapshot run.
        let said = String::from_utf8_lossy(&out.stderr);
        if mode == RunMode::Snapshot && said.contains("could not be restored") {
            return Err(BenchError::Failed(format!("isola run booted cold: {}", said.trim())));
        }
        Ok(us)
    };
    let template = || -> Result<(), BenchError> {
        let warm = Command::new(isola)
            .args(["template", "warm", "--network", "none"])
            .stdout(Stdio::null())
            .output()
            .map_err(io("isola template warm"))?;
        if !warm.status.success() {
            return Err(BenchError::Failed(format!("template warm: {}", String::from_utf8_lossy(&warm.stderr).trim())));
        }
        Ok(())
    };
    let ready = || -> Result<(), BenchError> {
        let fill = Command::new(isola)
            .args(["pool", "fill", "-n", "1", "--network", "none"])
            .stdout(Stdio::null())
            .output()
            .map_err(io("isola pool fill"))?;
        if !fill.status.success() {
            return Err(BenchError::Failed(format!("pool fill: {}", String::from_utf8_lossy(&fill.stderr).trim())));
        }
        let until = Instant::now() + WAIT;
        while Instant::now() < until {
            let ready = isola_sandbox::pool::all_members(&state_root)
                .iter()
                .any(|(d, _)| d.join(isola_sandbox::pool::READY_FILE).exists());
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(BenchError::Failed("no pool sandbox became ready".into()))
    };
    let mut samples: Vec<(Vec<u64>, Vec<String>)> = vec![Default::default(); modes.len()];
    for _ in 0..runs {
        for (mode, (wall, failures)) in modes.iter().zip(samples.iter_mut()) {
            let prepared = match mode {
                RunMode::Cold => Ok(()),
                RunMode::Snapshot => template(),
                RunMode::Pool => ready(),
            };
            match prepared.and_then(|()| run(*mode)) {
                Ok(us) => wall.push(us),
                Err(e) => failures.push(e.to_string()),
            }
        }
    }
    if modes.contains(&RunMode::Pool) {
        let _ = Command::new(isola).args(["pool", "stop"]).stdout(Stdio::null()).status();
    }
    modes
        .iter()
        .zip(samples)
        .map(|(mode, (wall, failures))| ModeSeries {
            mode: mode.name().into(),
            wall: Summary::of(&wall),
            failures,
            ..Default::default()
        })
        .collect()
}
