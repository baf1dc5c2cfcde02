//! `isola bench compare`, `isola bench ab` and `isola bench history`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use isola_bench::ab::{run_ab, AbConfig, Variant};
use isola_bench::boot::BootBench;
use isola_bench::compare::{compare_benches, table, Comparison};
use isola_bench::significance::Level;
use isola_sandbox::{assets, detect_kvm};

use crate::output::write_file;

#[derive(Args, Debug)]
pub struct LevelArgs {
    /// Family-wise false-positive rate of the verdicts (split over the phases).
    #[arg(long, default_value_t = Level::default().alpha)]
    alpha: f64,
    /// Smallest change of a median that counts, in percent.
    #[arg(long, default_value_t = Level::default().min_effect * 100.0)]
    min_effect: f64,
    /// Exit with status 3 when any phase is significantly slower (for CI gates).
    #[arg(long)]
    fail_on_slower: bool,
}

impl LevelArgs {
    fn level(&self) -> anyhow::Result<Level> {
        anyhow::ensure!(self.alpha > 0.0 && self.alpha < 1.0, "--alpha must be between 0 and 1");
        anyhow::ensure!(self.min_effect >= 0.0, "--min-effect must not be negative");
        Ok(Level { alpha: self.alpha, min_effect: self.min_effect / 100.0 })
    }

    fn exit(&self, c: &Comparison) -> ExitCode {
        if self.fail_on_slower && c.slower().next().is_some() {
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        }
    }
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The baseline: a JSON written by `isola bench boot`.
    base: PathBuf,
    /// The result to judge against it.
    new: PathBuf,
    /// A fixed input that is meant to differ (vcpus, mem_mib, cmdline, host_kernel,
    /// kvm, test_guest, kernel, initrd); repeatable.
    #[arg(long)]
    vary: Vec<String>,
    #[command(flatten)]
    level: LevelArgs,
    /// Where to write the comparison as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where to draw both distributions side by side.
    #[arg(long)]
    svg: Option<PathBuf>,
}

fn load(p: &Path) -> anyhow::Result<BootBench> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not an `isola bench boot` result", p.display()))
}

pub fn compare(a: CompareArgs) -> anyhow::Result<ExitCode> {
    let (base, new) = (load(&a.base)?, load(&a.new)?);
    let c = compare_benches(&base, &new, &a.vary, a.level.level()?)?;
    println!("isola bench compare: {} (A) vs {} (B)", a.base.display(), a.new.display());
    print!("{}", table(&c, "A", "B"));
    if let Some(p) = &a.json {
        write_file(p, &serde_json::to_string_pretty(&c)?)?;
    }
    if let Some(p) = &a.svg {
        let pairs = isola_bench::plot::distribution_pairs(&base.series, &new.series);
        isola_bench::plot::write_distributions(&pairs, "A", "B", p)?;
    }
    Ok(a.level.exit(&c))
}

#[derive(Args, Debug)]
pub struct AbArgs {
    /// Variant A's isola-vmm (default: the one beside this isola).
    #[arg(long)]
    a: Option<PathBuf>,
    /// Variant B's isola-vmm (default: the one beside this isola).
    #[arg(long)]
    b: Option<PathBuf>,
    /// Extra isola-vmm arguments for A (split on spaces).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    a_args: String,
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    b_args: String,
    /// A's guest kernel (default: the boot_check_pvh test guest).
    #[arg(long)]
    a_kernel: Option<PathBuf>,
    #[arg(long)]
    b_kernel: Option<PathBuf>,
    /// An initramfs for both: the guests are then Linux kernels (hardware KVM).
    #[arg(long)]
    initrd: Option<PathBuf>,
    #[arg(long, default_value = isola_sandbox::hypervisor::BOOT_PROBE_CMDLINE)]
    cmdline: String,
    /// Measured runs per variant.
    #[arg(short = 'n', long, default_value_t = 20)]
    runs: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 128)]
    memory: u64,
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    #[command(flatten)]
    level: LevelArgs,
    #[arg(long, default_value = "bench-results/ab.json")]
    json: PathBuf,
    #[arg(long, default_value = "bench-results/ab.svg")]
    svg: PathBuf,
}

pub fn ab(a: AbArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.runs > 0, "--runs must be at least 1");
    let default_vmm = || isola_sandbox::backend::isola_vmm::find().context("finding isola-vmm");
    let test_guest = || {
        isola_testguests::build("boot_check_pvh", &assets::guest_dir().join("test-guests"))
            .context("building the test guest")
    };
    let variant =
        |label: &str, vmm: &Option<PathBuf>, args: &str, kernel: &Option<PathBuf>| -> anyhow::Result<Variant> {
            let vmm = match vmm {
                Some(p) => p.clone(),
                None => default_vmm()?,
            };
            anyhow::ensure!(vmm.is_file(), "{label}: isola-vmm {} does not exist", vmm.display());
            let kernel = match kernel {
                Some(k) => k.clone(),
                None => test_guest()?,
            };
            let args = args.split_whitespace().map(String::from).collect();
            Ok(Variant::new(label, vmm, args, kernel, a.initrd.clone(), &a.cmdline))
        };
    let cfg = AbConfig {
        a: variant("A", &a.a, &a.a_args, &a.a_kernel)?,
        b: variant("B", &a.b, &a.b_args, &a.b_kernel)?,
        runs: a.runs,
        warmup: a.warmup,
        mem_mib: a.memory,
        vcpus: a.cpus,
        kvm: detect_kvm(),
        level: a.level.level()?,
    };
    let mut progress = crate::progress::BenchProgress::stderr();
    let r = run_ab(&cfg, &mut |msg| progress.show(msg));
    progress.done();
    println!("isola bench ab: {} rounds (+{} warm-up), A and B alternating, {}", a.runs, a.warmup, cfg.kvm.describe());
    for v in [&r.a, &r.b] {
        println!("  {}: {} {} on {}", v.label, v.vmm.display(), v.args.join(" "), v.kernel.display());
    }
    if let Some(w) = r.provenance.load_warning() {
        println!("{w}");
    }
    print!("{}", table(&r.comparison, "A", "B"));
    for s in &r.series {
        for f in &s.failures {
            println!("FAILED {}: {f}", s.key.backend);
        }
    }
    write_file(&a.json, &serde_json::to_string_pretty(&r)?)?;
    let pairs = isola_bench::plot::distribution_pairs(&r.series[..1], &r.series[1..]);
    isola_bench::plot::write_distributions(&pairs, "A", "B", &a.svg)?;
    println!("wrote {} and {}", a.json.display(), a.svg.display());
    if r.series.iter().any(|s| !s.failures.is_empty() || s.runs.is_empty()) {
        return Ok(ExitCode::from(1));
    }
    Ok(a.level.exit(&r.comparison))
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// A JSON written by `isola bench boot`.
    result: PathBuf,
    /// The release (or commit) the row is for.
    #[arg(long)]
    release: String,
    /// The file holding the history table.
    #[arg(long, default_value = "bench/README.md")]
    readme: PathBuf,
}

pub fn history(a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let b = load(&a.result)?;
    let text = std::fs::read_to_string(&a.readme).with_context(|| format!("reading {}", a.readme.display()))?;
    let updated = isola_bench::history::add_row(&text, &a.release, &b)?;
    write_file(&a.readme, &updated)?;
    println!("{}: history row for {} written", a.readme.display(), a.release);
    Ok(ExitCode::SUCCESS)
}
