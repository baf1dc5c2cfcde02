//! The container half of `isola bench start`: `isola run … true` cold against the same
//! run taking a sandbox from the warm pool (`isola pool`), on this host's backend.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{io, BenchError};
use crate::start::{ModeSeries, WAIT};
use crate::stats::Summary;

/// `isola run … true` from the warm pool against a cold boot of the same
/// configuration, alternating; wall time from spawn to exit, µs. Before each pooled
/// run the pool is filled (not timed) and a ready member waited for.
pub fn run_container_modes(isola: &Path, rootfs: &Path, runs: usize) -> Vec<ModeSeries> {
    let state_root = isola_sandbox::state::default_root();
    let run = |pool: bool| -> Result<u64, BenchError> {
        let mut c = Command::new(isola);
        c.args(["run", "--network", "none", "--rootfs"]).arg(rootfs);
        if !pool {
            c.arg("--no-pool");
        }
        c.args(["--", "true"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let t = Instant::now();
        let out = c.output().map_err(io("isola run"))?;
        let us = t.elapsed().as_micros() as u64;
        if !out.status.success() {
            return Err(BenchError::Failed(format!("isola run: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(us)
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
    let mut cold = (vec![], vec![]);
    let mut pooled = (vec![], vec![]);
    for _ in 0..runs {
        match run(false) {
            Ok(us) => cold.0.push(us),
            Err(e) => cold.1.push(e.to_string()),
        }
        match ready().and_then(|()| run(true)) {
            Ok(us) => pooled.0.push(us),
            Err(e) => pooled.1.push(e.to_string()),
        }
    }
    let _ = Command::new(isola).args(["pool", "stop"]).stdout(Stdio::null()).status();
    [("run cold", cold), ("run pool", pooled)]
        .into_iter()
        .map(|(mode, (wall, failures))| ModeSeries {
            mode: mode.into(),
            wall: Summary::of(&wall),
            failures,
            ..Default::default()
        })
        .collect()
}
