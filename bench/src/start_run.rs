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
    /// The row label a mode's series goes under.
    pub fn label(self) -> &'static str {
        match self {
            RunMode::Cold => "run cold",
            RunMode::Snapshot => "run snapshot",
            RunMode::Pool => "run pool",
        }
    }
}

/// One `isola run --network none --rootfs ROOTFS -- true` in `mode`, spawned: the
/// caller waits for it ([`finish_run`]).
pub fn spawn_run(isola: &Path, rootfs: &Path, mode: RunMode) -> Result<std::process::Child, BenchError> {
    let mut c = Command::new(isola);
    c.args(["run", "--network", "none", "--rootfs"]).arg(rootfs);
    match mode {
        RunMode::Cold => c.args(["--no-pool", "--no-template"]),
        RunMode::Snapshot => c.arg("--no-pool"),
        RunMode::Pool => c.arg("--no-template"),
    };
    c.args(["--", "true"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    c.spawn().map_err(io("isola run"))
}

/// Waits for a run from [`spawn_run`]: an error if it failed, or (snapshot mode) if it
/// fell back to a cold boot.
pub fn finish_run(child: std::process::Child, mode: RunMode) -> Result<(), BenchError> {
    let out = child.wait_with_output().map_err(io("isola run"))?;
    if !out.status.success() {
        return Err(BenchError::Failed(format!("isola run: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    // A restore that failed falls back to a cold boot and says so: not a snapshot run.
    let said = String::from_utf8_lossy(&out.stderr);
    if mode == RunMode::Snapshot && said.contains("could not be restored") {
        return Err(BenchError::Failed(format!("isola run booted cold: {}", said.trim())));
    }
    Ok(())
}

/// What `mode` needs before its timed runs: the template made (a no-op once it is), or
/// `n` pool members filled and ready.
pub fn prepare(isola: &Path, mode: RunMode, n: usize) -> Result<(), BenchError> {
    let tool = |args: &[&str], what: &str| -> Result<(), BenchError> {
        let out = Command::new(isola).args(args).stdout(Stdio::null()).output().map_err(io("isola"))?;
        if !out.status.success() {
            return Err(BenchError::Failed(format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(())
    };
    match mode {
        RunMode::Cold => Ok(()),
        RunMode::Snapshot => tool(&["template", "warm", "--network", "none"], "template warm"),
        RunMode::Pool => {
            tool(&["pool", "fill", "-n", &n.to_string(), "--network", "none"], "pool fill")?;
            let state_root = isola_sandbox::state::default_root();
            let until = Instant::now() + WAIT * n.max(1) as u32;
            while Instant::now() < until {
                let ready = isola_sandbox::pool::all_members(&state_root)
                    .iter()
                    .filter(|(d, _)| d.join(isola_sandbox::pool::READY_FILE).exists())
                    .count();
                if ready >= n {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(BenchError::Failed(format!("fewer than {n} pool sandboxes became ready")))
        }
    }
}

/// Ends the warm pool a run of `modes` filled.
pub fn stop_pool(isola: &Path, modes: &[RunMode]) {
    if modes.contains(&RunMode::Pool) {
        let _ = Command::new(isola).args(["pool", "stop"]).stdout(Stdio::null()).status();
    }
}

/// `isola run … true` in each of `modes`, alternating; wall time from spawn to exit,
/// µs. What a mode needs is made first, untimed: the pool filled and a ready member
/// waited for, the template made (a no-op once it is).
pub fn run_container_modes(isola: &Path, rootfs: &Path, runs: usize, modes: &[RunMode]) -> Vec<ModeSeries> {
    let run = |mode: RunMode| -> Result<u64, BenchError> {
        let t = Instant::now();
        finish_run(spawn_run(isola, rootfs, mode)?, mode)?;
        Ok(t.elapsed().as_micros() as u64)
    };
    let mut samples: Vec<(Vec<u64>, Vec<String>)> = vec![Default::default(); modes.len()];
    for _ in 0..runs {
        for (mode, (wall, failures)) in modes.iter().zip(samples.iter_mut()) {
            let prepared = prepare(isola, *mode, 1);
            match prepared.and_then(|()| run(*mode)) {
                Ok(us) => wall.push(us),
                Err(e) => failures.push(e.to_string()),
            }
        }
    }
    stop_pool(isola, modes);
    modes
        .iter()
        .zip(samples)
        .map(|(mode, (wall, failures))| ModeSeries {
            mode: mode.label().into(),
            wall: Summary::of(&wall),
            failures,
            ..Default::default()
        })
        .collect()
}
