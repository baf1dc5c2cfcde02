//! Soak: many sandboxes one after another, then many at once, each running a `true`
//! container to its end; reports failures, what was left on the host after each
//! phase (the sandbox inventory), and the host's memory at start and end. Not timed:
//! it says whether the runtime stays clean and bounded over many lives.

use serde::Serialize;

use crate::container::{isola_run_once, ContainerBenchConfig};
use isola_sandbox::inventory;

#[derive(Clone, Debug, Serialize)]
pub struct SoakPhase {
    pub name: String,
    pub runs: usize,
    pub failures: Vec<String>,
    /// What the inventory holds after the phase that it did not hold before.
    pub leaks: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    pub backend: String,
    pub phases: Vec<SoakPhase>,
    /// VmRSS of this process (the host side driving the sandboxes), KiB.
    pub self_rss_kib: (u64, u64),
    /// MemAvailable of the host, KiB.
    pub host_available_kib: (u64, u64),
}

impl SoakReport {
    pub fn clean(&self) -> bool {
        self.phases.iter().all(|p| p.failures.is_empty() && p.leaks.is_empty())
    }
}

/// `key`'s value in a /proc text of `key N kB` lines (0 when absent).
fn kib(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| crate::memory::kib(l, key)).unwrap_or(0)
}

fn self_rss() -> u64 {
    kib(&std::fs::read_to_string("/proc/self/status").unwrap_or_default(), "VmRSS:")
}

fn available() -> u64 {
    kib(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default(), "MemAvailable:")
}

fn phase(name: &str, runs: usize, run: impl FnOnce() -> Vec<String>) -> SoakPhase {
    let before = inventory::snapshot();
    let failures = run();
    // Processes end and the kernel drops taps asynchronously: a short grace.
    let leaks = inventory::settle(&before, 15);
    SoakPhase { name: name.into(), runs, failures, leaks }
}

/// `sequential` sandboxes one by one, then `concurrent` at once.
pub fn run_soak(cfg: &ContainerBenchConfig, sequential: usize, concurrent: usize) -> SoakReport {
    let (rss0, avail0) = (self_rss(), available());
    let seq = phase("sequential", sequential, || {
        (0..sequential).filter_map(|n| isola_run_once(cfg, n).err().map(|e| format!("run {n}: {e}"))).collect()
    });
    let conc = phase("concurrent", concurrent, || {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..concurrent).map(|n| s.spawn(move || isola_run_once(cfg, 10_000 + n))).collect();
            handles
                .into_iter()
                .enumerate()
                .filter_map(|(n, h)| match h.join() {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(format!("concurrent {n}: {e}")),
                    Err(_) => Some(format!("concurrent {n}: the thread panicked")),
                })
                .collect()
        })
    });
    SoakReport {
        backend: cfg.hypervisor.to_string(),
        phases: vec![seq, conc],
        self_rss_kib: (rss0, self_rss()),
        host_available_kib: (avail0, available()),
    }
}

/// The report as lines for a terminal.
pub fn table(r: &SoakReport) -> String {
    let mut out = format!("isola bench soak on {}\n", r.backend);
    for p in &r.phases {
        out += &format!(
            "  {:<10} runs {:>4}  failures {:>3}  leaks {:>3}\n",
            p.name,
            p.runs,
            p.failures.len(),
            p.leaks.len()
        );
        for f in &p.failures {
            out += &format!("    FAILED {f}\n");
        }
        for l in &p.leaks {
            out += &format!("    LEAK {l}\n");
        }
    }
    let (a, b) = r.self_rss_kib;
    out += &format!("  host-side RSS: {a} KiB at start, {b} KiB at end ({:+} KiB)\n", b as i64 - a as i64);
    let (a, b) = r.host_available_kib;
    out += &format!("  host MemAvailable: {a} KiB at start, {b} KiB at end ({:+} KiB)\n", b as i64 - a as i64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_clean_only_without_failures_and_leaks() {
        let p = |f: Vec<String>, l: Vec<String>| SoakPhase { name: "x".into(), runs: 1, failures: f, leaks: l };
        let r =
            |phases| SoakReport { backend: "qemu".into(), phases, self_rss_kib: (1, 2), host_available_kib: (3, 4) };
        assert!(r(vec![p(vec![], vec![])]).clean());
        assert!(!r(vec![p(vec!["run 0: boom".into()], vec![])]).clean());
        assert!(!r(vec![p(vec![], vec!["link isola1".into()])]).clean());
        let t = table(&r(vec![p(vec![], vec!["link isola1".into()])]));
        assert!(t.contains("LEAK link isola1") && t.contains("(+1 KiB)"), "{t}");
        assert_eq!(kib("VmRSS:\t  1234 kB\n", "VmRSS:"), 1234);
    }
}
