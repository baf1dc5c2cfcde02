//! What makes a benchmark result reproducible, recorded in every bench JSON: which
//! isola, which binaries and guests, which host and how busy it was.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Load average (1 min) per CPU above which `isola bench` warns that figures are noisy.
pub const BUSY_LOAD_PER_CPU: f64 = 0.5;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    pub isola_version: String,
    /// The commit the bench binary was built from (`ISOLA_COMMIT` at build time, else unknown).
    pub isola_commit: String,
    /// The exact command line.
    pub command: Vec<String>,
    /// sha256 of the running `isola` and of each VMM binary used.
    pub binaries: Vec<(String, Option<String>)>,
    pub host_kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub kvm: String,
    /// cpufreq governor and turbo/boost state, where readable.
    pub governor: Option<String>,
    pub turbo: Option<String>,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
}

/// The SHA-256 of a file, hex; `None` when it cannot be read.
pub fn sha256_file(p: &Path) -> Option<String> {
    let mut f = std::fs::File::open(p).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn read_trimmed(p: &str) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The running kernel's release.
pub fn host_kernel() -> String {
    read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default()
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    read_trimmed("/proc/loadavg")?.split_whitespace().next()?.parse().ok()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

fn turbo() -> Option<String> {
    if let Some(v) = read_trimmed("/sys/devices/system/cpu/intel_pstate/no_turbo") {
        return Some(if v == "1" { "off".into() } else { "on".into() });
    }
    read_trimmed("/sys/devices/system/cpu/cpufreq/boost").map(|v| if v == "1" { "on".into() } else { "off".into() })
}

impl Provenance {
    /// Everything known before the runs; `binaries` are hashed now.
    pub fn start(kvm: &str, binaries: &[&Path]) -> Self {
        let exe = std::env::current_exe().ok();
        let mut bins: Vec<(String, Option<String>)> =
            exe.iter().map(|p| (p.display().to_string(), sha256_file(p))).collect();
        bins.extend(binaries.iter().map(|p| (p.display().to_string(), sha256_file(p))));
        Provenance {
            isola_version: env!("CARGO_PKG_VERSION").into(),
            isola_commit: option_env!("ISOLA_COMMIT").unwrap_or("unknown").into(),
            command: std::env::args().collect(),
            binaries: bins,
            host_kernel: host_kernel(),
            cpu_model: cpu_model(),
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            kvm: kvm.into(),
            governor: read_trimmed("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            turbo: turbo(),
            load_before: load_average(),
            load_after: None,
        }
    }

    pub fn finish(&mut self) {
        self.load_after = load_average();
    }

    /// A warning line when the machine was busy before or after the runs.
    pub fn load_warning(&self) -> Option<String> {
        let limit = BUSY_LOAD_PER_CPU * self.cpus as f64;
        let worst = self.load_before.into_iter().chain(self.load_after).fold(0.0f64, f64::max);
        (worst > limit).then(|| {
            format!(
                "warning: the machine is busy (load average {worst:.2} on {} CPUs, above {limit:.2}): figures are noisy; \
                 compare only runs made under the same load, or use `isola bench ab`",
                self.cpus
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_described_and_a_busy_one_is_flagged() {
        let mut p = Provenance::start("pvm", &[Path::new("/bin/sh")]);
        p.finish();
        assert!(!p.host_kernel.is_empty() && p.cpus >= 1 && !p.command.is_empty());
        assert!(p.binaries.iter().any(|(b, h)| b == "/bin/sh" && h.as_ref().is_some_and(|h| h.len() == 64)));
        p.load_before = Some(0.0);
        p.load_after = Some(0.0);
        assert!(p.load_warning().is_none());
        p.load_after = Some(100.0 * p.cpus as f64);
        assert!(p.load_warning().expect("busy").contains("busy"));
    }
}
