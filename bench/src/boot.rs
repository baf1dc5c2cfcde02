//! `isola bench boot`: N boots per (backend, guest), phases per run, and ratios of
//! isola-vmm to each peer on the same guest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use isola_sandbox::{boot, BootReport, BootSpec, HypervisorKind, KvmKind, QemuAccel};

use crate::stats::Summary;

/// Which guest a series boots.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Guest {
    /// The freestanding `boot_check_pvh` test guest: reports, hits the boot timer, resets.
    TestGuest,
    /// Our Linux kernel + initramfs; `/init` prints its marker and resets.
    Linux,
    /// A full sandbox on the Linux guest running one container (`true`); the peer is
    /// runc running the same rootfs and command without a VM.
    Container,
}

impl Guest {
    pub fn marker(&self) -> &'static str {
        match self {
            Guest::TestGuest => "isola-guest: done",
            Guest::Linux => isola_sandbox::READY_MARKER,
            Guest::Container => "",
        }
    }
}

/// One series: a backend (with QEMU's accelerator) on one guest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct SeriesKey {
    pub backend: String,
    pub guest: Guest,
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {:?}", self.backend, self.guest)
    }
}

#[derive(Clone, Debug)]
pub struct BootBenchConfig {
    pub runs: usize,
    pub warmup: usize,
    pub compare_qemu: bool,
    pub test_guest: PathBuf,
    pub linux_kernel: PathBuf,
    pub linux_initrd: PathBuf,
    pub mem_mib: u64,
    pub vcpus: u8,
    pub cmdline: String,
    pub kvm: KvmKind,
    /// Also measure container phases in a sandbox (and runc, when compared).
    pub container: Option<crate::container::ContainerBenchConfig>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Series {
    pub key: SeriesKey,
    /// Phase name → µs since the VMM process was spawned, one map per run.
    pub runs: Vec<BTreeMap<String, u64>>,
    pub summary: BTreeMap<String, Summary>,
    /// isola-vmm only: VMM RSS minus resident guest RAM, KiB, per run.
    pub overhead_kib: Vec<u64>,
    pub failures: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ratio {
    pub guest: Guest,
    pub phase: String,
    pub peer: String,
    pub isola_p50_us: u64,
    pub peer_p50_us: u64,
    /// isola-vmm p50 / peer p50: below 1 means isola is faster.
    pub ratio: f64,
}

/// Fixed inputs, recorded so a result can be reproduced.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    pub runs: usize,
    pub warmup: usize,
    pub vcpus: u8,
    pub mem_mib: u64,
    pub cmdline: String,
    pub host_kernel: String,
    pub kvm: KvmKind,
    pub test_guest_sha256: Option<String>,
    pub kernel_sha256: Option<String>,
    pub initrd_sha256: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BootBench {
    #[serde(default)]
    pub provenance: crate::provenance::Provenance,
    pub inputs: Inputs,
    pub series: Vec<Series>,
    pub ratios: Vec<Ratio>,
    /// Series not run on this host, and why.
    pub not_run: Vec<String>,
}

/// The matrix this host can run: isola-vmm on the test guest always; Linux under
/// isola-vmm only on hardware KVM; QEMU (KVM where usable) on the same guests, and
/// QEMU TCG on Linux where KVM cannot boot it.
/// `qemu_kvm` is why QEMU with KVM cannot run here, if it cannot ([`crate::peer`]).
pub fn plan(
    cfg: &BootBenchConfig,
    qemu_kvm: Option<String>,
) -> (Vec<(SeriesKey, HypervisorKind, QemuAccel)>, Vec<String>) {
    let mut plan = Vec::new();
    let mut not_run = Vec::new();
    let key = |backend: &str, guest| SeriesKey { backend: backend.into(), guest };
    plan.push((key("isola-vmm", Guest::TestGuest), HypervisorKind::IsolaVmm, QemuAccel::Kvm));
    if let (true, Some(why)) = (cfg.compare_qemu, &qemu_kvm) {
        not_run.push(format!("qemu-kvm: {why}"));
    }
    if cfg.compare_qemu && qemu_kvm.is_none() {
        plan.push((key("qemu-kvm", Guest::TestGuest), HypervisorKind::Qemu, QemuAccel::Kvm));
    }
    if cfg.kvm == KvmKind::Hardware {
        plan.push((key("isola-vmm", Guest::Linux), HypervisorKind::IsolaVmm, QemuAccel::Kvm));
        if cfg.compare_qemu && qemu_kvm.is_none() {
            plan.push((key("qemu-kvm", Guest::Linux), HypervisorKind::Qemu, QemuAccel::Kvm));
        }
    } else {
        not_run.push(format!("isola-vmm / Linux: needs hardware KVM, this host has {}", cfg.kvm.describe()));
        if cfg.compare_qemu {
            plan.push((key("qemu-tcg", Guest::Linux), HypervisorKind::Qemu, QemuAccel::Tcg));
        }
    }
    (plan, not_run)
}

fn spec_for(cfg: &BootBenchConfig, guest: &Guest, accel: QemuAccel) -> BootSpec {
    let (kernel, initrd) = match guest {
        Guest::TestGuest => (cfg.test_guest.clone(), None),
        Guest::Linux | Guest::Container => (cfg.linux_kernel.clone(), Some(cfg.linux_initrd.clone())),
    };
    BootSpec {
        kernel,
        initrd,
        cmdline: cfg.cmdline.clone(),
        mem_mib: cfg.mem_mib,
        vcpus: cfg.vcpus,
        timeout: Duration::from_secs(120),
        accel,
    }
}

fn run_series(
    cfg: &BootBenchConfig,
    key: SeriesKey,
    kind: HypervisorKind,
    accel: QemuAccel,
    progress: &mut dyn FnMut(&str),
) -> Series {
    let spec = spec_for(cfg, &key.guest, accel);
    let mut runs = Vec::new();
    let mut overhead = Vec::new();
    let mut failures = Vec::new();
    for i in 0..cfg.warmup + cfg.runs {
        let warm = i < cfg.warmup;
        match boot(kind, cfg.kvm, &spec, key.guest.marker(), None) {
            Ok(r) if r.success => {
                if !warm {
                    if let (Some(rss), Some(guest)) = (r.values.get("rss_kib"), r.values.get("guest_resident_kib")) {
                        overhead.push(rss.saturating_sub(*guest));
                    }
                    runs.push(phases_of(&r));
                }
            }
            Ok(r) => {
                failures.push(format!("run {i}: {}", r.diagnostics.lines().last().unwrap_or("guest did not finish")))
            }
            Err(e) => failures.push(format!("run {i}: {e}")),
        }
        progress(&format!("{key}: {}/{}", i + 1, cfg.warmup + cfg.runs));
    }
    let summary = summarize(&runs);
    Series { key, runs, summary, overhead_kib: overhead, failures }
}

/// A run's phases: the VMM's own events plus what the caller saw.
pub fn phases_of(r: &BootReport) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for p in &r.phases {
        // The first boot-timer write is the milestone; later ones are the guest's own.
        m.entry(p.name.clone()).or_insert(p.us);
    }
    m
}

pub fn summarize(runs: &[BTreeMap<String, u64>]) -> BTreeMap<String, Summary> {
    let mut by_phase: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for run in runs {
        for (k, v) in run {
            by_phase.entry(k.clone()).or_default().push(*v);
        }
    }
    by_phase.into_iter().filter_map(|(k, v)| Some((k, Summary::of(&v)?))).collect()
}

/// isola-vmm p50 over each peer's p50, for every phase both measured on the same guest.
pub fn ratios(series: &[Series]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let is_ours = |s: &&Series| s.key.backend.starts_with("isola");
    for ours in series.iter().filter(is_ours) {
        for peer in series.iter().filter(|s| !is_ours(s) && s.key.guest == ours.key.guest) {
            for (phase, o) in &ours.summary {
                if let Some(p) = peer.summary.get(phase) {
                    if p.p50 > 0 {
                        out.push(Ratio {
                            guest: ours.key.guest.clone(),
                            phase: phase.clone(),
                            peer: peer.key.backend.clone(),
                            isola_p50_us: o.p50,
                            peer_p50_us: p.p50,
                            ratio: o.p50 as f64 / p.p50 as f64,
                        });
                    }
                }
            }
        }
    }
    out
}

/// N measured runs (after warm-up) of `once`, as a series.
fn repeat(
    cfg: &BootBenchConfig,
    key: SeriesKey,
    progress: &mut dyn FnMut(&str),
    once: &mut dyn FnMut(usize) -> Result<BTreeMap<String, u64>, crate::BenchError>,
) -> Series {
    let (mut runs, mut failures) = (Vec::new(), Vec::new());
    for i in 0..cfg.warmup + cfg.runs {
        match once(i) {
            Ok(p) if i >= cfg.warmup => runs.push(p),
            Ok(_) => {}
            Err(e) => failures.push(format!("run {i}: {e}")),
        }
        progress(&format!("{key}: {}/{}", i + 1, cfg.warmup + cfg.runs));
    }
    Series { key, summary: summarize(&runs), runs, overhead_kib: vec![], failures }
}

fn container_series(cfg: &BootBenchConfig, progress: &mut dyn FnMut(&str), not_run: &mut Vec<String>) -> Vec<Series> {
    use crate::container::{isola_run_once, runc_available, runc_bundle, runc_run_once};
    let Some(cc) = &cfg.container else { return vec![] };
    let key = |backend: String| SeriesKey { backend, guest: Guest::Container };
    let ours = key(format!("isola-{}", cc.hypervisor));
    let mut out = vec![repeat(cfg, ours, progress, &mut |i| isola_run_once(cc, i))];
    if !cfg.compare_qemu {
        return out;
    }
    if !runc_available() {
        not_run.push("runc / Container: runc is not installed (apt-get install runc)".into());
        return out;
    }
    let bundle = std::env::temp_dir().join(format!("isola-bench-runc-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&bundle);
    match runc_bundle(&cc.rootfs, &bundle) {
        Ok(()) => out.push(repeat(cfg, key("runc".into()), progress, &mut |i| runc_run_once(&bundle, i))),
        Err(e) => not_run.push(format!("runc / Container: {e}")),
    }
    let _ = std::fs::remove_dir_all(&bundle);
    out
}

pub fn run_boot_bench(cfg: &BootBenchConfig, progress: &mut dyn FnMut(&str)) -> BootBench {
    let vmm = isola_sandbox::backend::isola_vmm::find().ok();
    let bins: Vec<&Path> = [Some(cfg.test_guest.as_path()), vmm.as_deref()].into_iter().flatten().collect();
    let mut provenance = crate::provenance::Provenance::start(cfg.kvm.describe(), &bins);
    let qemu_kvm = cfg
        .compare_qemu
        .then(|| crate::peer::qemu_kvm_unusable(cfg.kvm, &cfg.test_guest, Guest::TestGuest.marker()))
        .flatten();
    let (plan, mut not_run) = plan(cfg, qemu_kvm);
    let mut series: Vec<Series> =
        plan.into_iter().map(|(key, kind, accel)| run_series(cfg, key, kind, accel, progress)).collect();
    series.extend(container_series(cfg, progress, &mut not_run));
    let uses_linux = series.iter().any(|s| s.key.guest != Guest::TestGuest);
    let inputs = Inputs {
        runs: cfg.runs,
        warmup: cfg.warmup,
        vcpus: cfg.vcpus,
        mem_mib: cfg.mem_mib,
        cmdline: cfg.cmdline.clone(),
        host_kernel: crate::provenance::host_kernel(),
        kvm: cfg.kvm,
        test_guest_sha256: crate::provenance::sha256_file(&cfg.test_guest),
        kernel_sha256: uses_linux.then(|| crate::provenance::sha256_file(&cfg.linux_kernel)).flatten(),
        initrd_sha256: uses_linux.then(|| crate::provenance::sha256_file(&cfg.linux_initrd)).flatten(),
    };
    let ratios = ratios(&series);
    provenance.finish();
    BootBench { provenance, inputs, series, ratios, not_run }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(backend: &str, guest: Guest, total: &[u64]) -> Series {
        let runs: Vec<BTreeMap<String, u64>> = total
            .iter()
            .map(|t| BTreeMap::from([("exited".to_string(), *t), ("console_marker".into(), t / 2)]))
            .collect();
        Series {
            key: SeriesKey { backend: backend.into(), guest },
            summary: summarize(&runs),
            runs,
            overhead_kib: vec![],
            failures: vec![],
        }
    }

    #[test]
    fn ratios_pair_isola_with_peers_on_the_same_guest_only() {
        let s = vec![
            series("isola-vmm", Guest::TestGuest, &[10, 20, 30]),
            series("qemu-kvm", Guest::TestGuest, &[40, 40, 40]),
            series("qemu-tcg", Guest::Linux, &[1000]),
        ];
        let r = ratios(&s);
        assert_eq!(r.len(), 2, "{r:?}");
        let total = r.iter().find(|x| x.phase == "exited").expect("exited ratio");
        assert_eq!((total.isola_p50_us, total.peer_p50_us), (20, 40));
        assert!((total.ratio - 0.5).abs() < 1e-9);
        assert!(r.iter().all(|x| x.peer == "qemu-kvm"));
    }

    #[test]
    fn plan_on_pvm_runs_linux_only_under_qemu_tcg_and_says_why() {
        let cfg = BootBenchConfig {
            runs: 1,
            warmup: 0,
            compare_qemu: true,
            test_guest: "g".into(),
            linux_kernel: "k".into(),
            linux_initrd: "i".into(),
            mem_mib: 128,
            vcpus: 1,
            cmdline: String::new(),
            kvm: KvmKind::Pvm,
            container: None,
        };
        let (p, not_run) = plan(&cfg, None);
        let names: Vec<String> = p.iter().map(|(k, ..)| k.to_string()).collect();
        assert_eq!(names, ["isola-vmm / TestGuest", "qemu-kvm / TestGuest", "qemu-tcg / Linux"]);
        assert_eq!(not_run.len(), 1);
        assert!(not_run[0].contains("hardware KVM"));
        let (p, not_run) = plan(&cfg, Some("QEMU aborted".into()));
        assert!(p.iter().all(|(k, ..)| k.backend != "qemu-kvm"), "an unusable peer is not planned");
        assert!(not_run.iter().any(|n| n == "qemu-kvm: QEMU aborted"), "{not_run:?}");
        let hw = BootBenchConfig { kvm: KvmKind::Hardware, ..cfg };
        let (p, not_run) = plan(&hw, None);
        assert_eq!(p.len(), 4);
        assert!(not_run.is_empty());
    }

    #[test]
    fn first_boot_timer_write_is_the_phase() {
        let r = BootReport {
            hypervisor: HypervisorKind::IsolaVmm,
            kvm: KvmKind::Pvm,
            phases: vec![
                isola_sandbox::Phase { name: "boot_timer".into(), us: 5 },
                isola_sandbox::Phase { name: "boot_timer".into(), us: 9 },
            ],
            values: BTreeMap::new(),
            success: true,
            exit_code: Some(0),
            console: String::new(),
            diagnostics: String::new(),
        };
        assert_eq!(phases_of(&r).get("boot_timer"), Some(&5));
    }
}
