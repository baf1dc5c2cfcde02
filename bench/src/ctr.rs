//! `isola bench ctr` and `isola bench docker`: `ctr run --rm IMAGE … true` through
//! containerd, or `docker run --rm --runtime RT IMAGE true` through dockerd, with
//! isola and with a peer runtime (runc) in the same run, alternating so that both see
//! the same machine state.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;

use crate::stats::Summary;

/// Which command line starts each container.
#[derive(Clone, Debug)]
pub enum Client {
    /// `ctr -a ADDRESS -n NAMESPACE run --rm --runtime RT IMAGE NAME true`
    Ctr { address: PathBuf, namespace: String },
    /// `docker -H HOST run --rm --runtime RT IMAGE true` (RT as registered with dockerd)
    Docker { host: String, binary: PathBuf },
}

impl Client {
    fn command(&self, runtime: &str, image: &str, name: &str) -> Command {
        match self {
            Client::Ctr { address, namespace } => {
                let mut c = Command::new("ctr");
                c.arg("-a").arg(address).args([
                    "-n",
                    namespace,
                    "run",
                    "--rm",
                    "--runtime",
                    runtime,
                    image,
                    name,
                    "true",
                ]);
                c
            }
            Client::Docker { host, binary } => {
                let mut c = Command::new(binary);
                c.args(["-H", host, "run", "--rm", "--runtime", runtime, image, "true"]);
                c
            }
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Client::Ctr { .. } => "ctr run --rm",
            Client::Docker { .. } => "docker run --rm",
        }
    }
}

#[derive(Clone, Debug)]
pub struct CtrBenchConfig {
    pub client: Client,
    pub image: String,
    /// Runtimes to compare, e.g. `io.containerd.isola.v2` and `io.containerd.runc.v2`.
    pub runtimes: Vec<String>,
    pub runs: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuntimeResult {
    pub runtime: String,
    /// Wall time of each `ctr run --rm … true`, in microseconds.
    pub samples_us: Vec<u64>,
    pub summary: Option<Summary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CtrBench {
    /// The command that ran (`ctr run --rm`, `docker run --rm`).
    pub command: String,
    pub image: String,
    pub runs: usize,
    pub results: Vec<RuntimeResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum CtrBenchError {
    #[error("cannot run {0}: {1} (apt-get install containerd / docker.io)")]
    Spawn(&'static str, std::io::Error),
    #[error("`{command} --runtime {runtime}` failed (exit {code}): {stderr}")]
    Run { command: &'static str, runtime: String, code: i32, stderr: String },
    #[error("give at least one run and one runtime")]
    Empty,
}

fn run_once(cfg: &CtrBenchConfig, runtime: &str, name: &str) -> Result<u64, CtrBenchError> {
    let started = Instant::now();
    let out = cfg
        .client
        .command(runtime, &cfg.image, name)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CtrBenchError::Spawn(cfg.client.label(), e))?;
    let us = started.elapsed().as_micros() as u64;
    if !out.status.success() {
        return Err(CtrBenchError::Run {
            command: cfg.client.label(),
            runtime: runtime.into(),
            code: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(us)
}

/// One warm-up run per runtime, then `runs` rounds, each running every runtime once.
pub fn run_ctr_bench(cfg: &CtrBenchConfig) -> Result<CtrBench, CtrBenchError> {
    if cfg.runs == 0 || cfg.runtimes.is_empty() {
        return Err(CtrBenchError::Empty);
    }
    let mut samples = vec![Vec::with_capacity(cfg.runs); cfg.runtimes.len()];
    for round in 0..=cfg.runs {
        for (i, rt) in cfg.runtimes.iter().enumerate() {
            let us = run_once(cfg, rt, &format!("isola-bench-{i}-{round}"))?;
            if round > 0 {
                samples[i].push(us);
            }
        }
    }
    let results = cfg
        .runtimes
        .iter()
        .zip(samples)
        .map(|(rt, s)| RuntimeResult { runtime: rt.clone(), summary: Summary::of(&s), samples_us: s })
        .collect();
    Ok(CtrBench { command: cfg.client.label().into(), image: cfg.image.clone(), runs: cfg.runs, results })
}

/// The table: one line per runtime, and each one's median against the first's.
pub fn table(b: &CtrBench) -> String {
    let mut out = format!(
        "{} {} true: {} runs per runtime (+1 warm-up), alternating\n{:<28} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
        b.command, b.image, b.runs, "runtime", "min ms", "p50 ms", "p95 ms", "max ms", "p50 ratio"
    );
    let base = b.results.first().and_then(|r| r.summary).map(|s| s.p50);
    for r in &b.results {
        let Some(s) = r.summary else { continue };
        let ms = |us: u64| us as f64 / 1000.0;
        let ratio = base.filter(|b| *b > 0).map(|b| format!("{:.2}", s.p50 as f64 / b as f64)).unwrap_or_default();
        out.push_str(&format!(
            "{:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10}\n",
            r.runtime,
            ms(s.min),
            ms(s.p50),
            ms(s.p95),
            ms(s.max),
            ratio
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_compares_medians_with_the_first_runtime() {
        let r = |rt: &str, s: Vec<u64>| RuntimeResult { runtime: rt.into(), summary: Summary::of(&s), samples_us: s };
        let b = CtrBench {
            command: "docker run --rm".into(),
            image: "busybox".into(),
            runs: 3,
            results: vec![r("isola", vec![1_000_000, 1_200_000, 1_100_000]), r("runc", vec![50_000, 55_000, 60_000])],
        };
        let t = table(&b);
        assert!(t.contains("isola") && t.starts_with("docker run --rm busybox true"), "{t}");
        let runc = t.lines().find(|l| l.starts_with("runc")).expect("runc line");
        assert!(runc.contains("55.0") && runc.trim_end().ends_with("0.05"), "{runc}");
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let cfg = CtrBenchConfig {
            client: Client::Ctr { address: "/nonexistent".into(), namespace: "default".into() },
            image: "x".into(),
            runtimes: vec![],
            runs: 3,
        };
        assert!(matches!(run_ctr_bench(&cfg), Err(CtrBenchError::Empty)));
    }
}
