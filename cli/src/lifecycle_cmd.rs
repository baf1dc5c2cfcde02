//! `isola stop`, `isola wait` and `isola stats`, as `docker stop/wait/stats` behave.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use isola_sandbox::state::{self, SandboxState};
use isola_sandbox::ContainerStats;

use crate::manage_cmd::{container_id, find};

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    sandboxes: Vec<String>,
}

/// Waits for the container's exit for at most `limit`: its exit code, or None on time-out.
fn wait_for(st: &SandboxState, id: &str, limit: Duration) -> anyhow::Result<Option<i32>> {
    let (tx, rx) = mpsc::channel();
    let agent = st.agent(Duration::from_secs(10));
    let id = id.to_string();
    // The wait blocks without a time limit in the agent; this thread ends with the
    // container or with the process.
    std::thread::spawn(move || {
        let _ = tx.send(agent.wait(&id, None));
    });
    match rx.recv_timeout(limit) {
        Ok(r) => Ok(Some(r.context("waiting for the container")?.code)),
        Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            anyhow::bail!("the wait for the container ended without an answer")
        }
    }
}

/// SIGTERM, then SIGKILL (to every process of the container) after `-t` seconds. The
/// sandbox stays, with its exit code, until `isola rm`.
pub fn stop(a: StopArgs) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for name in &a.sandboxes {
        let r = (|| {
            let (_, st) = find(name)?;
            let id = container_id(name, &st)?;
            let c = st.container(&id, Duration::from_secs(10));
            // A container that has exited already takes no signal: it is stopped.
            if c.signal(libc::SIGTERM, false).is_ok() && wait_for(&st, &id, Duration::from_secs(a.time))?.is_none() {
                c.signal(libc::SIGKILL, true).context("SIGKILL")?;
                wait_for(&st, &id, Duration::from_secs(10))?.context("the container outlived SIGKILL by 10 s")?;
            }
            anyhow::Ok(())
        })();
        match r {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("isola: stop {name}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    sandboxes: Vec<String>,
}

/// Blocks until each container exits and prints its exit code (128 + signal if killed).
pub fn wait(a: WaitArgs) -> anyhow::Result<ExitCode> {
    for name in &a.sandboxes {
        let (_, st) = find(name)?;
        let id = container_id(name, &st)?;
        let status =
            st.agent(Duration::from_secs(10)).wait(&id, None).with_context(|| format!("waiting for {name}"))?;
        println!("{}", status.code);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// One sample, then exit (else a new table every second until interrupted).
    #[arg(long)]
    no_stream: bool,
    /// JSON output (one array per sample).
    #[arg(long)]
    json: bool,
    /// Sandboxes (default: every running one).
    sandboxes: Vec<String>,
}

/// One row of `isola stats`: the guest cgroup's figures, CPU as a share of one CPU
/// over the sampling interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatsRow {
    pub name: String,
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    /// None: no limit in the guest (the VM's memory bounds it).
    pub memory_limit_bytes: Option<u64>,
    pub pids: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
}

pub fn row(name: &str, before: &ContainerStats, after: &ContainerStats, elapsed: Duration) -> StatsRow {
    let used = after.cpu_usage_usec.saturating_sub(before.cpu_usage_usec) as f64;
    let span = elapsed.as_micros().max(1) as f64;
    StatsRow {
        name: name.into(),
        cpu_percent: (used / span * 1000.0).round() / 10.0,
        memory_bytes: after.memory_current,
        memory_limit_bytes: after.memory_max,
        pids: after.pids_current,
        io_read_bytes: after.io_read_bytes,
        io_write_bytes: after.io_write_bytes,
    }
}

/// Bytes as Docker prints them (1024-based, two decimals below 10).
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else if v < 10.0 {
        format!("{v:.2}{}", units[u])
    } else {
        format!("{v:.1}{}", units[u])
    }
}

fn sample(targets: &[(String, SandboxState)]) -> Vec<Option<ContainerStats>> {
    targets
        .iter()
        .map(|(name, st)| {
            let id = container_id(name, st).ok()?;
            st.container(&id, Duration::from_secs(2)).stats().ok()
        })
        .collect()
}

pub fn stats(a: StatsArgs) -> anyhow::Result<ExitCode> {
    let targets: Vec<(String, SandboxState)> = if a.sandboxes.is_empty() {
        state::list(&state::default_root()).into_iter().map(|(_, st)| (st.id.clone(), st)).collect()
    } else {
        a.sandboxes.iter().map(|n| find(n).map(|(_, st)| (n.clone(), st))).collect::<anyhow::Result<_>>()?
    };
    let redraw = !a.no_stream && !a.json && std::io::stdout().is_terminal();
    let mut before = sample(&targets);
    let mut at = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let after = sample(&targets);
        let elapsed = at.elapsed();
        at = Instant::now();
        let rows: Vec<StatsRow> = targets
            .iter()
            .zip(before.iter().zip(&after))
            .filter_map(|((name, _), (b, s))| Some(row(name, b.as_ref()?, s.as_ref()?, elapsed)))
            .collect();
        if a.json {
            println!("{}", serde_json::to_string(&rows)?);
        } else {
            if redraw {
                print!("\x1b[2J\x1b[H");
            }
            println!("{:<24} {:>7} {:>22} {:>6} {:>20}", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS", "BLOCK I/O");
            for r in &rows {
                let limit = r.memory_limit_bytes.map(human).unwrap_or_else(|| "-".into());
                let mem = format!("{} / {limit}", human(r.memory_bytes));
                let io = format!("{} / {}", human(r.io_read_bytes), human(r.io_write_bytes));
                println!("{:<24} {:>6.1}% {:>22} {:>6} {:>20}", r.name, r.cpu_percent, mem, r.pids, io);
            }
        }
        if a.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_a_share_of_one_cpu_over_the_interval() {
        let b = ContainerStats { cpu_usage_usec: 1_000_000, ..Default::default() };
        let a = ContainerStats { cpu_usage_usec: 1_500_000, memory_current: 3 << 20, pids_current: 2, ..b.clone() };
        let r = row("s1", &b, &a, Duration::from_secs(1));
        assert_eq!((r.cpu_percent, r.memory_bytes, r.pids), (50.0, 3 << 20, 2));
        // A counter that went back (a restarted cgroup) is no usage, not a huge number.
        assert_eq!(row("s1", &a, &b, Duration::from_secs(1)).cpu_percent, 0.0);
    }

    #[test]
    fn sizes_print_as_docker_prints_them() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(1536), "1.50KiB");
        assert_eq!(human(300 << 20), "300.0MiB");
        assert_eq!(human(2 << 30), "2.00GiB");
    }
}
