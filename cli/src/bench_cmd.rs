//! `isola bench ...`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use isola_bench::boot::{run_boot_bench, BootBenchConfig};
use isola_bench::container::ContainerBenchConfig;
use isola_sandbox::{assets, detect_kvm};

use crate::output::write_file;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Boot N times per backend and guest; report phases, ratios to peers, JSON and SVG.
    Boot(BootBenchArgs),
    /// Agent round trips (ping, new connection) and `exec` latency in one sandbox.
    Exec(ExecArgs),
    /// Start N idle sandboxes together: time to start all, host memory per sandbox.
    Density(DensityArgs),
    /// VMM memory beyond guest RAM: the same idle test guest under isola-vmm and QEMU.
    Overhead(OverheadArgs),
    /// File throughput in a container on a virtio-fs volume vs the host directory.
    Fs(SandboxBenchArgs),
    /// `ctr run --rm IMAGE true` through a running containerd: isola's shim vs runc.
    Ctr(CtrArgs),
    /// `docker run --rm --runtime isola IMAGE true` through dockerd: isola-runtime vs runc.
    Docker(DockerArgs),
    /// Many sandboxes in a row, then many at once: failures, leaks, host memory drift.
    Soak(SoakArgs),
    /// Cold boot against restore from a snapshot (isola-vmm, test guest), and PSS per
    /// restored clone against per cold VM.
    Start(crate::bench_start_cmd::StartArgs),
    /// Two `bench boot` results phase by phase: ratio, confidence interval, verdict.
    Compare(crate::bench_ab_cmd::CompareArgs),
    /// Two isola-vmm variants booted alternately in one session, then compared.
    Ab(crate::bench_ab_cmd::AbArgs),
    /// Adds a row of headline ratios to the history table in bench/README.md.
    History(crate::bench_ab_cmd::HistoryArgs),
}

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// Sandboxes started one after another (each runs `true` to its end).
    #[arg(long, default_value_t = 200)]
    sequential: usize,
    /// Sandboxes started at once, after the sequential ones.
    #[arg(long, default_value_t = 20)]
    concurrent: usize,
    #[command(flatten)]
    sandbox: SandboxBenchArgs,
}

fn soak(a: SoakArgs) -> anyhow::Result<ExitCode> {
    let cfg = container_config(&a.sandbox.rootfs, a.sandbox.memory, a.sandbox.cpus)?;
    let r = isola_bench::soak::run_soak(&cfg, a.sequential, a.concurrent);
    print!("{}", isola_bench::soak::table(&r));
    write_json(&a.sandbox.json.unwrap_or_else(|| "bench-results/soak.json".into()), &r)?;
    Ok(if r.clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[derive(Args, Debug)]
pub struct CtrArgs {
    /// containerd's socket.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    address: PathBuf,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// An image already in containerd (`ctr images import` / `pull`).
    #[arg(long)]
    image: String,
    /// Runs per runtime.
    #[arg(short = 'n', long, default_value_t = 10)]
    runs: usize,
    /// The peer runtime; `none` runs isola alone.
    #[arg(long, default_value = "io.containerd.runc.v2")]
    compare: String,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench-results/ctr.json")]
    json: PathBuf,
}

fn ctr(a: CtrArgs) -> anyhow::Result<ExitCode> {
    let client = isola_bench::ctr::Client::Ctr { address: a.address, namespace: a.namespace };
    compare_runtimes(client, "io.containerd.isola.v2", &a.compare, a.image, a.runs, &a.json)
}

/// isola against `compare` (unless `none`) through `client`: the table printed, the JSON written.
fn compare_runtimes(
    client: isola_bench::ctr::Client,
    isola: &str,
    compare: &str,
    image: String,
    runs: usize,
    json: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let mut runtimes = vec![isola.to_string()];
    if compare != "none" {
        runtimes.push(compare.to_string());
    }
    let cfg = isola_bench::ctr::CtrBenchConfig { client, image, runtimes, runs };
    let r = isola_bench::ctr::run_ctr_bench(&cfg)?;
    print!("{}", isola_bench::ctr::table(&r));
    write_json(json, &r)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct DockerArgs {
    /// dockerd's address.
    #[arg(long, default_value = "unix:///var/run/docker.sock")]
    host: String,
    /// The docker client.
    #[arg(long, default_value = "docker")]
    docker: PathBuf,
    /// An image dockerd has (`docker load` / `import` / `pull`).
    #[arg(long)]
    image: String,
    /// isola-runtime's name in dockerd's `runtimes`.
    #[arg(long, default_value = "isola")]
    runtime: String,
    /// The peer runtime; `none` runs isola alone.
    #[arg(long, default_value = "runc")]
    compare: String,
    #[arg(short = 'n', long, default_value_t = 10)]
    runs: usize,
    #[arg(long, default_value = "bench-results/docker.json")]
    json: PathBuf,
}

fn docker(a: DockerArgs) -> anyhow::Result<ExitCode> {
    let client = isola_bench::ctr::Client::Docker { host: a.host, binary: a.docker };
    compare_runtimes(client, &a.runtime, &a.compare, a.image, a.runs, &a.json)
}

#[derive(Args, Debug)]
pub struct SandboxBenchArgs {
    /// Rootfs of the container.
    #[arg(long, default_value = "/var/lib/isola/busybox-rootfs")]
    rootfs: PathBuf,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    memory: u64,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Where to write the JSON result.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Pings (the connection count is min(pings, 200)).
    #[arg(long, default_value_t = 1000)]
    pings: usize,
    /// Execs of `true`.
    #[arg(long, default_value_t = 20)]
    execs: usize,
    #[command(flatten)]
    sandbox: SandboxBenchArgs,
}

#[derive(Args, Debug)]
pub struct DensityArgs {
    /// Sandboxes to start together.
    #[arg(short = 'n', long, default_value_t = 4)]
    sandboxes: usize,
    /// Instead: N clones restored from one isola-vmm snapshot against N cold-booted
    /// VMs of the same test guest, PSS per VMM (as `isola bench start --clones N`).
    #[arg(long)]
    clones: Option<usize>,
    /// Instead: a container touches this many MiB and exits; how much of it, and how
    /// soon, the host gets back, with the balloon's free page reporting on and off.
    #[arg(long, value_name = "MIB")]
    reclaim: Option<u64>,
    /// How long --reclaim waits for the memory to come back, in seconds.
    #[arg(long, default_value_t = 20)]
    reclaim_wait: u64,
    #[command(flatten)]
    sandbox: SandboxBenchArgs,
}

#[derive(Args, Debug)]
pub struct OverheadArgs {
    /// Samples per backend.
    #[arg(short = 'n', long, default_value_t = 5)]
    runs: usize,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    memory: u64,
    /// Peer: qemu, or none.
    #[arg(long, default_value = "qemu")]
    compare: String,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench-results/overhead.json")]
    json: PathBuf,
}

fn compare_with_qemu(peer: &str) -> anyhow::Result<bool> {
    match peer {
        "qemu" => Ok(true),
        "none" => Ok(false),
        other => anyhow::bail!("--compare takes qemu or none, not {other:?}"),
    }
}

fn container_config(rootfs: &std::path::Path, memory: u64, cpus: u8) -> anyhow::Result<ContainerBenchConfig> {
    anyhow::ensure!(
        rootfs.join("bin").is_dir(),
        "container rootfs {} is missing (scripts/setup.sh makes it, or pass another)",
        rootfs.display()
    );
    // The configured kernel and initramfs, as `isola run` boots; the bench's -m is the VM's size.
    let host = isola_sandbox::placement::Host::load(None)?;
    let mut boot = host.boot_spec(
        None,
        Some(isola_sandbox::placement::Vcpus::Exactly(cpus)),
        isola_sandbox::placement::DEFAULT_BOOT_TIMEOUT,
    );
    boot.mem_mib = memory;
    Ok(ContainerBenchConfig {
        boot,
        hypervisor: host.hypervisor(None),
        kvm: host.kvm,
        rootfs: rootfs.into(),
        disk: None,
    })
}

fn write_json(path: &std::path::Path, v: &impl serde::Serialize) -> anyhow::Result<()> {
    write_file(path, &serde_json::to_string_pretty(v)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn summary_line(what: &str, s: &Option<isola_bench::Summary>, unit: &str, scale: f64) -> String {
    match s {
        Some(s) => format!(
            "{what:<22} n={:<5} min {:>9.3}  p50 {:>9.3}  p95 {:>9.3}  p99 {:>9.3}  max {:>9.3} {unit}",
            s.n,
            s.min as f64 / scale,
            s.p50 as f64 / scale,
            s.p95 as f64 / scale,
            s.p99 as f64 / scale,
            s.max as f64 / scale
        ),
        None => format!("{what:<22} no samples"),
    }
}

fn exec(a: ExecArgs) -> anyhow::Result<ExitCode> {
    let cfg = container_config(&a.sandbox.rootfs, a.sandbox.memory, a.sandbox.cpus)?;
    let r = isola_bench::exec::run_exec(&cfg, a.pings, a.execs).map_err(anyhow::Error::msg)?;
    println!("isola bench exec: one sandbox on {} ({}), {} MiB", r.backend, cfg.kvm.describe(), cfg.boot.mem_mib);
    println!("{}", summary_line("ping (open conn)", &r.ping_us, "ms", 1000.0));
    println!("{}", summary_line("connect + ping", &r.connect_us, "ms", 1000.0));
    println!("{}", summary_line("exec true", &r.exec_us, "ms", 1000.0));
    write_json(&a.sandbox.json.unwrap_or_else(|| "bench-results/exec.json".into()), &r)?;
    Ok(ExitCode::SUCCESS)
}

fn density(a: DensityArgs) -> anyhow::Result<ExitCode> {
    if let Some(n) = a.clones {
        return crate::bench_start_cmd::clones(n);
    }
    anyhow::ensure!(a.sandboxes > 0, "--sandboxes must be at least 1");
    let cfg = container_config(&a.sandbox.rootfs, a.sandbox.memory, a.sandbox.cpus)?;
    if let Some(mib) = a.reclaim {
        return reclaim(&cfg, mib, a.reclaim_wait, a.sandbox.json);
    }
    let r = isola_bench::exec::run_density(&cfg, a.sandboxes);
    println!(
        "isola bench density: {} sandboxes on {} ({}), {} MiB each",
        r.sandboxes,
        r.backend,
        cfg.kvm.describe(),
        r.mem_mib
    );
    println!("started all in {} ms; all answered ping: {}", r.start_all_ms, r.all_answered_ping);
    println!("{}", summary_line("PSS per sandbox", &r.pss_kib, "MiB", 1024.0));
    for (i, m) in r.per_sandbox.iter().enumerate() {
        println!(
            "  sandbox {i}: PSS {:.1} MiB (guest RAM {:.1} MiB), RSS {:.1} MiB",
            m.pss_kib as f64 / 1024.0,
            m.guest_pss_kib as f64 / 1024.0,
            m.rss_kib as f64 / 1024.0
        );
    }
    for f in &r.failures {
        println!("FAILED {f}");
    }
    write_json(&a.sandbox.json.unwrap_or_else(|| "bench-results/density.json".into()), &r)?;
    Ok(if r.failures.is_empty() && r.all_answered_ping { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn reclaim(cfg: &ContainerBenchConfig, mib: u64, wait_s: u64, json: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let r = isola_bench::reclaim::run(cfg, mib, std::time::Duration::from_secs(wait_s)).map_err(anyhow::Error::msg)?;
    println!(
        "isola bench density --reclaim: a container touches {} MiB and exits; {} ({}), {} MiB VM",
        r.touched_mib,
        r.backend,
        cfg.kvm.describe(),
        r.mem_mib
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>16}  {:>12}  back within 10% of idle",
        "balloon", "idle MiB", "peak MiB", "after MiB", "guest idle/after", "3/4 back"
    );
    for run in &r.runs {
        let back = match run.returned_ms {
            Some(ms) => format!("after {ms} ms"),
            None => format!("not within {} s", r.wait_ms / 1000),
        };
        println!(
            "{:<16} {:>10.1} {:>10.1} {:>10.1} {:>7.1}/{:<8.1}  {:>12}  {back}",
            if run.balloon { "on (reporting)" } else { "off" },
            run.idle_kib as f64 / 1024.0,
            run.peak_kib as f64 / 1024.0,
            run.after_kib as f64 / 1024.0,
            run.idle_guest_kib as f64 / 1024.0,
            run.after_guest_kib as f64 / 1024.0,
            run.three_quarters_ms.map_or("never".into(), |ms| format!("{ms} ms"))
        );
    }
    write_json(&json.unwrap_or_else(|| "bench-results/reclaim.json".into()), &r)?;
    Ok(ExitCode::SUCCESS)
}

fn overhead(a: OverheadArgs) -> anyhow::Result<ExitCode> {
    let compare = compare_with_qemu(&a.compare)?;
    anyhow::ensure!(a.runs > 0, "--runs must be at least 1");
    let guest = isola_testguests::build("idle", &assets::guest_dir().join("test-guests"))
        .context("building the idle test guest")?;
    let kvm = detect_kvm();
    let series = isola_bench::overhead::run(kvm, &guest, a.memory, a.runs, compare);
    println!("isola bench overhead: idle test guest, 1 vCPU, {} MiB, {}", a.memory, kvm.describe());
    println!("VMM RSS minus resident guest RAM (KiB):");
    for s in &series {
        match &s.overhead_kib {
            Some(o) => println!("  {:<10} n={} min {} p50 {} max {}", s.backend, o.n, o.min, o.p50, o.max),
            None => match &s.not_run {
                Some(why) => println!("  {:<10} not run here: {why}", s.backend),
                None => println!("  {:<10} no samples", s.backend),
            },
        }
        for f in &s.failures {
            println!("  {:<10} FAILED {f}", s.backend);
        }
    }
    if let [ours, peer] = &series[..] {
        if let (Some(o), Some(p)) = (&ours.overhead_kib, &peer.overhead_kib) {
            if p.p50 > 0 {
                println!("ratio isola-vmm / {} (p50): {:.2}", peer.backend, o.p50 as f64 / p.p50 as f64);
            }
        }
    }
    write_json(&a.json, &series)?;
    let failed = series.iter().any(|s| s.overhead_kib.is_none() && s.not_run.is_none());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[derive(Args, Debug)]
pub struct BootBenchArgs {
    /// Measured runs per series.
    #[arg(short = 'n', long, default_value_t = 20)]
    runs: usize,
    /// Unmeasured runs first (page cache, binaries).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Peer to measure in the same run: qemu, or none.
    #[arg(long, default_value = "qemu")]
    compare: String,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    memory: u64,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Kernel command line for every guest.
    #[arg(long, default_value = isola_sandbox::hypervisor::BOOT_PROBE_CMDLINE)]
    cmdline: String,
    /// Rootfs for the container phases (a sandbox running `true`, vs runc).
    #[arg(long, default_value = "/var/lib/isola/busybox-rootfs")]
    container_rootfs: PathBuf,
    /// Skip the container phases.
    #[arg(long)]
    no_container: bool,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench-results/boot.json")]
    json: PathBuf,
    /// Where to write the SVG plot.
    #[arg(long, default_value = "bench-results/boot.svg")]
    svg: PathBuf,
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCmd::Boot(a) => boot(a),
        BenchCmd::Exec(a) => exec(a),
        BenchCmd::Ctr(a) => ctr(a),
        BenchCmd::Docker(a) => docker(a),
        BenchCmd::Soak(a) => soak(a),
        BenchCmd::Density(a) => density(a),
        BenchCmd::Overhead(a) => overhead(a),
        BenchCmd::Fs(a) => fs(a),
        BenchCmd::Start(a) => crate::bench_start_cmd::start(a),
        BenchCmd::Compare(a) => crate::bench_ab_cmd::compare(a),
        BenchCmd::Ab(a) => crate::bench_ab_cmd::ab(a),
        BenchCmd::History(a) => crate::bench_ab_cmd::history(a),
    }
}

fn boot(a: BootBenchArgs) -> anyhow::Result<ExitCode> {
    let compare_qemu = compare_with_qemu(&a.compare)?;
    anyhow::ensure!(a.runs > 0, "--runs must be at least 1");
    let guest_dir = assets::guest_dir().join("test-guests");
    let test_guest = isola_testguests::build("boot_check_pvh", &guest_dir).context("building the test guest")?;
    let kvm = detect_kvm();
    let container = if a.no_container { None } else { Some(container_config(&a.container_rootfs, a.memory, a.cpus)?) };
    let cfg = BootBenchConfig {
        runs: a.runs,
        warmup: a.warmup,
        compare_qemu,
        test_guest,
        linux_kernel: assets::default_kernel(),
        linux_initrd: assets::default_initrd(),
        mem_mib: a.memory,
        vcpus: a.cpus,
        cmdline: a.cmdline,
        kvm,
        container,
    };
    let mut progress = crate::progress::BenchProgress::stderr();
    let result = run_boot_bench(&cfg, &mut |msg| progress.show(msg));
    progress.done();
    if let Some(w) = result.provenance.load_warning() {
        println!("{w}");
    }
    print!("{}", isola_bench::report::table(&result));
    for p in [&a.json, &a.svg] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    std::fs::write(&a.json, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", a.json.display()))?;
    isola_bench::plot::write_svg(&result, &a.svg)?;
    println!("wrote {} and {}", a.json.display(), a.svg.display());
    let failed = result.series.iter().any(|s| !s.failures.is_empty() || s.runs.is_empty());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn fs(a: SandboxBenchArgs) -> anyhow::Result<ExitCode> {
    let cfg = container_config(&a.rootfs, a.memory, a.cpus)?;
    let r = isola_bench::fs::run(&cfg).map_err(anyhow::Error::msg)?;
    println!(
        "isola bench fs: container on a virtio-fs volume ({}, {}) vs the host directory",
        r.backend,
        cfg.kvm.describe()
    );
    println!("{:<28} {:>12} {:>12} {:>8}", "", "guest", "host", "ratio");
    for (what, g, h) in [
        ("seq write 64 MiB (MB/s)", r.guest.write_mb_s, r.host.write_mb_s),
        ("seq read 64 MiB (MB/s)", r.guest.read_mb_s, r.host.read_mb_s),
        ("small files (files/s)", r.guest.small_files_per_s, r.host.small_files_per_s),
    ] {
        println!("{what:<28} {g:>12.1} {h:>12.1} {:>8.3}", g / h.max(1e-9));
    }
    let root = isola_bench::fs::run_rootfs(&cfg).map_err(anyhow::Error::msg)?;
    println!(
        "\nthe root filesystem: an erofs disk (virtio-blk; {} MiB, built in {} ms) vs the same tree over virtio-fs vs the host",
        root.disk_bytes >> 20,
        root.build_ms
    );
    println!("{:<30} {:>10} {:>10} {:>10} {:>9} {:>9}", "", "disk", "virtio-fs", "host", "disk/host", "disk/fs");
    let (dirs, files) = isola_bench::fs::TREE;
    let walk = format!("find {} entries (entries/s)", dirs * files + dirs + 1);
    let tar = format!("tar {} files (files/s)", dirs * files);
    let read = format!("seq read {} MiB (MB/s)", isola_bench::fs::BIG_MIB);
    for (what, d, f, h) in [
        (read.as_str(), root.disk.read_mb_s, root.share.read_mb_s, root.host.read_mb_s),
        (walk.as_str(), root.disk.walk_entries_per_s, root.share.walk_entries_per_s, root.host.walk_entries_per_s),
        (tar.as_str(), root.disk.tar_files_per_s, root.share.tar_files_per_s, root.host.tar_files_per_s),
    ] {
        println!("{what:<30} {d:>10.1} {f:>10.1} {h:>10.1} {:>9.3} {:>9.2}", d / h.max(1e-9), d / f.max(1e-9));
    }
    let json = a.json.unwrap_or_else(|| "bench-results/fs.json".into());
    write_json(&json, &serde_json::json!({ "volume": r, "rootfs": root }))?;
    Ok(ExitCode::SUCCESS)
}
