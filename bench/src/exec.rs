//! `isola bench exec` and `isola bench density`: agent round trips and exec latency in
//! one running sandbox; N idle sandboxes started together and what each costs the host.

use std::time::{Duration, Instant};

use isola_sandbox::spec::{self, ContainerOptions};

use crate::container::ContainerBenchConfig;
use crate::error::BenchError;
use crate::memory::{self, ProcMemory};
use crate::stats::Summary;

#[derive(Clone, Debug, serde::Serialize)]
pub struct ExecBench {
    pub backend: String,
    /// Ping over one open connection, µs.
    pub ping_us: Option<Summary>,
    /// New vsock connection (CONNECT handshake) plus a ping, µs.
    pub connect_us: Option<Summary>,
    /// Exec `true` in a running container: exec, start, wait, µs.
    pub exec_us: Option<Summary>,
}

fn timed(n: usize, mut f: impl FnMut(usize) -> Result<(), BenchError>) -> Result<Option<Summary>, BenchError> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i)?;
        v.push(t.elapsed().as_micros() as u64);
    }
    Ok(Summary::of(&v))
}

pub fn run_exec(cfg: &ContainerBenchConfig, pings: usize, execs: usize) -> Result<ExecBench, BenchError> {
    let mut sb = crate::container::sandbox(cfg, "exec")?;
    let result = (|| {
        let c = crate::container::container(&sb, cfg, &["sleep", "100000"], &[])?;
        c.start()?;
        let agent = sb.agent();
        let ping_us = timed(pings, |_| Ok(agent.ping().map(drop)?))?;
        let connect_us = timed(pings.min(200), |_| Ok(agent.connect().and_then(|mut c| c.ping()).map(drop)?))?;
        let process = spec::process(&ContainerOptions { args: vec!["true".into()], ..Default::default() })?;
        let exec_us = timed(execs, |i| {
            let p = c.exec(&format!("e{i}"), process.clone())?;
            p.start()?;
            match p.wait()? {
                status if status.code == 0 => Ok(()),
                status => Err(BenchError::Failed(format!("exec ended with {status:?}"))),
            }
        })?;
        Ok(ExecBench { backend: cfg.hypervisor.to_string(), ping_us, connect_us, exec_us })
    })();
    sb.stop();
    result
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DensityBench {
    pub backend: String,
    pub sandboxes: usize,
    pub mem_mib: u64,
    /// From the first spawn until every agent answered.
    pub start_all_ms: u64,
    pub all_answered_ping: bool,
    /// Per sandbox: VMM plus helper processes.
    pub per_sandbox: Vec<ProcMemory>,
    pub pss_kib: Option<Summary>,
    pub failures: Vec<String>,
}

pub fn run_density(cfg: &ContainerBenchConfig, n: usize) -> DensityBench {
    use std::sync::mpsc::channel;
    let t0 = Instant::now();
    let (ready_tx, ready_rx) = channel();
    let mut stops = Vec::new();
    let mut handles = Vec::new();
    // Each sandbox lives on the thread that started it: its VMM has PDEATHSIG set, which
    // fires when that thread (not the process) ends.
    for i in 0..n {
        let (cfg, ready_tx) = (cfg.clone(), ready_tx.clone());
        let (stop_tx, stop_rx) = channel::<()>();
        stops.push(stop_tx);
        handles.push(std::thread::spawn(move || match crate::container::sandbox(&cfg, &format!("density{i}")) {
            Ok(mut sb) => {
                let pids: Vec<i32> = std::iter::once(sb.state.vmm_pid).chain(sb.state.helper_pids.clone()).collect();
                let _ = ready_tx.send(Ok((pids, sb.agent())));
                let _ = stop_rx.recv();
                sb.stop();
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
            }
        }));
    }
    drop(ready_tx);
    let mut started = Vec::new();
    let mut failures = Vec::new();
    for r in ready_rx.iter().take(n) {
        match r {
            Ok(s) => started.push(s),
            Err(e) => failures.push(e),
        }
    }
    let start_all_ms = t0.elapsed().as_millis() as u64;
    // Idle for a moment so boot-time transients are gone before sampling.
    std::thread::sleep(Duration::from_millis(500));
    let mut per_sandbox = Vec::new();
    let mut all_answered_ping = failures.is_empty();
    for (pids, agent) in &started {
        let mut m = ProcMemory::default();
        for pid in pids {
            if let Some(p) = memory::of_pid(*pid, cfg.boot.mem_mib) {
                m.add(&p);
            }
        }
        per_sandbox.push(m);
        if agent.connect().and_then(|mut c| c.ping()).is_err() {
            all_answered_ping = false;
        }
    }
    for s in stops {
        let _ = s.send(());
    }
    for h in handles {
        let _ = h.join();
    }
    let pss: Vec<u64> = per_sandbox.iter().map(|m| m.pss_kib).collect();
    DensityBench {
        backend: cfg.hypervisor.to_string(),
        sandboxes: n,
        mem_mib: cfg.boot.mem_mib,
        start_all_ms,
        all_answered_ping,
        pss_kib: Summary::of(&pss),
        per_sandbox,
        failures,
    }
}
