//! `isola bench ab`: two variants of isola-vmm (two builds, two flag sets, two guests)
//! booted alternately in one session — ABBA… after warm-up, so drift and load hit both
//! alike — then compared phase by phase.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use isola_sandbox::backend::isola_vmm::probe_command_at;
use isola_sandbox::boot::boot_with;
use isola_sandbox::{BootSpec, HypervisorKind, KvmKind, QemuAccel};

use crate::boot::{phases_of, summarize, Guest, Series, SeriesKey};
use crate::compare::{compare_pairs, Comparison};
use crate::provenance::{sha256_file, Provenance};
use crate::significance::Level;

/// One side of the comparison.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Variant {
    pub label: String,
    /// The isola-vmm binary.
    pub vmm: PathBuf,
    /// Extra isola-vmm arguments.
    pub args: Vec<String>,
    /// The guest: a test guest, or a Linux kernel when `initrd` is set.
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub vmm_sha256: Option<String>,
    pub kernel_sha256: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AbConfig {
    pub a: Variant,
    pub b: Variant,
    pub runs: usize,
    pub warmup: usize,
    pub mem_mib: u64,
    pub vcpus: u8,
    pub kvm: KvmKind,
    pub level: Level,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AbBench {
    pub provenance: Provenance,
    pub a: Variant,
    pub b: Variant,
    pub runs: usize,
    pub warmup: usize,
    pub mem_mib: u64,
    pub vcpus: u8,
    pub series: Vec<Series>,
    pub comparison: Comparison,
}

impl Variant {
    pub fn new(
        label: &str,
        vmm: PathBuf,
        args: Vec<String>,
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: &str,
    ) -> Self {
        Variant {
            label: label.into(),
            vmm_sha256: sha256_file(&vmm),
            kernel_sha256: sha256_file(&kernel),
            vmm,
            args,
            kernel,
            initrd,
            cmdline: cmdline.into(),
        }
    }

    fn guest(&self) -> Guest {
        if self.initrd.is_some() {
            Guest::Linux
        } else {
            Guest::TestGuest
        }
    }

    fn once(&self, cfg: &AbConfig) -> Result<BTreeMap<String, u64>, String> {
        let spec = BootSpec {
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline: self.cmdline.clone(),
            mem_mib: cfg.mem_mib,
            vcpus: cfg.vcpus,
            timeout: Duration::from_secs(60),
            accel: QemuAccel::Auto,
        };
        let mut cmd = probe_command_at(&self.vmm, &spec);
        cmd.args(&self.args);
        let r = boot_with(cmd, HypervisorKind::IsolaVmm, cfg.kvm, &spec, self.guest().marker(), None)
            .map_err(|e| e.to_string())?;
        if !r.success {
            return Err(r.diagnostics.lines().last().unwrap_or("the guest did not finish").to_string());
        }
        Ok(phases_of(&r))
    }
}

/// Runs both variants alternately and compares them.
pub fn run_ab(cfg: &AbConfig, progress: &mut dyn FnMut(&str)) -> AbBench {
    let mut provenance = Provenance::start(cfg.kvm.describe(), &[&cfg.a.vmm, &cfg.b.vmm, &cfg.a.kernel, &cfg.b.kernel]);
    let variants = [&cfg.a, &cfg.b];
    let mut runs: [Vec<BTreeMap<String, u64>>; 2] = [Vec::new(), Vec::new()];
    let mut failures: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for round in 0..cfg.warmup + cfg.runs {
        // A B, then B A: neither side always goes first.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            match variants[side].once(cfg) {
                Ok(p) if round >= cfg.warmup => runs[side].push(p),
                Ok(_) => {}
                Err(e) => failures[side].push(format!("run {round}: {e}")),
            }
        }
        progress(&format!("ab: round {}/{}", round + 1, cfg.warmup + cfg.runs));
    }
    let [runs_a, runs_b] = runs;
    let [fail_a, fail_b] = failures;
    let series_of = |v: &Variant, runs: Vec<BTreeMap<String, u64>>, failures: Vec<String>| Series {
        key: SeriesKey { backend: v.label.clone(), guest: v.guest() },
        summary: summarize(&runs),
        runs,
        overhead_kib: vec![],
        failures,
    };
    let sa = series_of(&cfg.a, runs_a, fail_a);
    let sb = series_of(&cfg.b, runs_b, fail_b);
    let phases = compare_pairs(&[(&sa, &sb)], cfg.level);
    provenance.finish();
    AbBench {
        provenance,
        a: cfg.a.clone(),
        b: cfg.b.clone(),
        runs: cfg.runs,
        warmup: cfg.warmup,
        mem_mib: cfg.mem_mib,
        vcpus: cfg.vcpus,
        series: vec![sa, sb],
        comparison: Comparison { level: cfg.level, varied: vec!["vmm".into()], phases },
    }
}
