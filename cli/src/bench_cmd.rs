//! `isola bench ...`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use isola_bench::boot::{run_boot_bench, BootBenchConfig};
use isola_sandbox::{assets, detect_kvm};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Boot N times per backend and guest; report phases, ratios to peers, JSON and SVG.
    Boot(BootBenchArgs),
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
    }
}

fn boot(a: BootBenchArgs) -> anyhow::Result<ExitCode> {
    let compare_qemu = match a.compare.as_str() {
        "qemu" => true,
        "none" => false,
        other => anyhow::bail!("--compare takes qemu or none, not {other:?}"),
    };
    anyhow::ensure!(a.runs > 0, "--runs must be at least 1");
    let guest_dir = assets::guest_dir().join("test-guests");
    let test_guest = isola_vmm::testguest::build("boot_check_pvh", &guest_dir).context("building the test guest")?;
    let kvm = detect_kvm();
    let container = (!a.no_container).then(|| {
        anyhow::ensure!(
            a.container_rootfs.join("bin").is_dir(),
            "container rootfs {} is missing (scripts/setup.sh makes it, or pass --no-container)",
            a.container_rootfs.display()
        );
        Ok(isola_bench::container::ContainerBenchConfig {
            boot: isola_sandbox::BootSpec {
                kernel: assets::default_kernel(),
                initrd: Some(assets::default_initrd()),
                cmdline: isola_sandbox::hypervisor::DEFAULT_CMDLINE.into(),
                mem_mib: a.memory,
                vcpus: a.cpus,
                timeout: std::time::Duration::from_secs(60),
                accel: isola_sandbox::QemuAccel::Auto,
            },
            hypervisor: isola_sandbox::choose(None, kvm),
            kvm,
            rootfs: a.container_rootfs.clone(),
        })
    });
    let container = container.transpose()?;
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
    let result = run_boot_bench(&cfg, &mut |msg| eprint!("\r\x1b[K{msg}"));
    eprintln!();
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
