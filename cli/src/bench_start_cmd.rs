//! `isola bench start`: cold boot against snapshot restore in one run (isola-vmm).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use isola_bench::start::{self, RunMode, StartBench};
use isola_sandbox::{assets, HypervisorKind};

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Measured starts per mode (cold and snapshot, alternating).
    #[arg(short = 'n', long, default_value_t = 20)]
    runs: usize,
    /// Also start this many restored clones and as many cold VMs at once, and compare
    /// their memory (PSS per VMM); 0 for none.
    #[arg(long, default_value_t = 8)]
    clones: usize,
    /// Also `isola run --rootfs DIR -- true` cold and from the warm pool, side by side
    /// (this host's default backend); "" to skip.
    #[arg(long, default_value = "/var/lib/isola/busybox-rootfs")]
    container_rootfs: PathBuf,
    /// How the Linux sandboxes start, side by side: cold, snapshot (restored from a
    /// template: isola-vmm on hardware KVM), pool (the warm pool). Modes this host's
    /// backend cannot do are left out and said so.
    #[arg(long, value_delimiter = ',', default_value = "cold,snapshot,pool")]
    mode: Vec<RunMode>,
    /// Instead: N `isola run --rootfs DIR -- true` at once for each N given (e.g.
    /// 1,4,8), in each mode: sandboxes per second, p50/p95/p99 per start, and the host
    /// CPU each start costs outside the guest.
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench-results/start.json")]
    json: PathBuf,
}

/// `--concurrency`: the many-at-once series alone.
fn concurrency(a: &StartArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.concurrency.iter().all(|n| *n > 0), "--concurrency takes counts of at least 1");
    anyhow::ensure!(a.container_rootfs.is_dir(), "{} is not a directory", a.container_rootfs.display());
    let host = isola_sandbox::placement::Host::load(None)?;
    let hypervisor = host.hypervisor(None);
    let mut modes = a.mode.clone();
    if hypervisor != HypervisorKind::IsolaVmm && modes.contains(&RunMode::Snapshot) {
        eprintln!("isola bench start: no snapshot mode here: templates are isola-vmm snapshots, and this host's backend is {hypervisor}");
        modes.retain(|m| *m != RunMode::Snapshot);
    }
    let me = std::env::current_exe().context("finding the isola binary")?;
    let rows = isola_bench::concurrency::run(&me, &a.container_rootfs, &modes, &a.concurrency);
    println!(
        "isola bench start --concurrency: isola run --rootfs {} -- true, {hypervisor} ({})",
        a.container_rootfs.display(),
        host.kvm.describe()
    );
    print!("{}", isola_bench::concurrency::table(&rows));
    crate::output::write_file(&a.json, &serde_json::to_string_pretty(&rows)?)?;
    eprintln!("wrote {}", a.json.display());
    let failed = rows.iter().any(|r| !r.failures.is_empty() || r.succeeded != r.n);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `isola bench density --clones N`: the clone half of `bench start` alone.
pub fn clones(n: usize) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(n > 0, "--clones must be at least 1");
    let bin = isola_sandbox::backend::isola_vmm::find()?;
    let guest = isola_testguests::build("ticker", &assets::guest_dir().join("test-guests"))
        .context("building the ticker test guest")?;
    let dir = tempfile::Builder::new().prefix("isola-bench-start-").tempdir().context("scratch directory")?;
    let snap = start::make_template(&bin, &guest, dir.path()).context("making the template snapshot")?;
    let density = start::run_density(&bin, &guest, &snap, n)?;
    let b = StartBench { guest: "ticker".into(), guest_mib: start::GUEST_MIB, density, ..Default::default() };
    print!("{}", start::table(&b));
    Ok(ExitCode::SUCCESS)
}

pub fn start(a: StartArgs) -> anyhow::Result<ExitCode> {
    if !a.concurrency.is_empty() {
        return concurrency(&a);
    }
    anyhow::ensure!(a.runs > 0, "--runs must be at least 1");
    let bin = isola_sandbox::backend::isola_vmm::find()?;
    let guest = isola_testguests::build("ticker", &assets::guest_dir().join("test-guests"))
        .context("building the ticker test guest")?;
    let dir = tempfile::Builder::new().prefix("isola-bench-start-").tempdir().context("scratch directory")?;
    let snap = start::make_template(&bin, &guest, dir.path()).context("making the template snapshot")?;
    let modes = start::run_start(&bin, &guest, &snap, a.runs);
    let density = if a.clones > 0 { start::run_density(&bin, &guest, &snap, a.clones)? } else { vec![] };
    let host = isola_sandbox::placement::Host::load(None)?;
    let (kvm, hypervisor) = (host.kvm, host.hypervisor(None));
    let mut run_modes = a.mode.clone();
    if hypervisor != HypervisorKind::IsolaVmm && run_modes.contains(&RunMode::Snapshot) {
        eprintln!("isola bench start: no snapshot mode for Linux sandboxes here: templates are isola-vmm snapshots, and this host's backend is {hypervisor}");
        run_modes.retain(|m| *m != RunMode::Snapshot);
    }
    let (containers, sandboxes, sandbox_density) = if a.container_rootfs.as_os_str().is_empty() {
        (vec![], vec![], vec![])
    } else {
        anyhow::ensure!(a.container_rootfs.is_dir(), "{} is not a directory", a.container_rootfs.display());
        let me = std::env::current_exe().context("finding the isola binary")?;
        let containers = start::run_container_modes(&me, &a.container_rootfs, a.runs, &run_modes);
        let sandboxes = if run_modes.contains(&RunMode::Snapshot) {
            // As `isola run` boots it, on isola-vmm (the only backend with templates).
            let boot = host.boot_spec(None, None, isola_sandbox::placement::DEFAULT_BOOT_TIMEOUT);
            let cfg = isola_bench::container::ContainerBenchConfig {
                boot,
                hypervisor,
                kvm,
                rootfs: a.container_rootfs.clone(),
                disk: None,
            };
            start::run_sandbox_modes(&cfg, a.runs, a.clones)?
        } else {
            (vec![], vec![])
        };
        (containers, sandboxes.0, sandboxes.1)
    };
    let backend = hypervisor.to_string();
    let b = StartBench {
        guest: "ticker".into(),
        guest_mib: start::GUEST_MIB,
        runs: a.runs,
        modes,
        density: density.into_iter().chain(sandbox_density).collect(),
        sandboxes,
        containers,
        backend,
    };
    print!("{}", start::table(&b));
    crate::output::write_file(&a.json, &serde_json::to_string_pretty(&b)?)?;
    eprintln!("wrote {}", a.json.display());
    let failed = b.modes.iter().any(|m| m.guest_running.is_none())
        || b.containers.iter().any(|m| m.wall.is_none())
        || b.sandboxes.iter().any(|m| m.container_exited.is_none());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
