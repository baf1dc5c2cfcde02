//! `isola boot`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use isola_sandbox::hypervisor::BOOT_PROBE_CMDLINE;
use isola_sandbox::{boot, BootSpec, HypervisorKind, QemuAccel};

#[derive(Args, Debug)]
pub struct BootArgs {
    /// Backend: isola-vmm or qemu (default: isola-vmm on hardware KVM, else qemu).
    #[arg(long)]
    hypervisor: Option<HypervisorKind>,
    /// Guest kernel (default: /var/lib/isola/guest/bzImage).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Guest initramfs (default: /var/lib/isola/guest/initramfs.cpio).
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Boot without an initramfs (test guests).
    #[arg(long, conflicts_with = "initrd")]
    no_initrd: bool,
    /// QEMU accelerator: auto (KVM only on hardware KVM), kvm or tcg.
    #[arg(long, default_value = "auto")]
    accel: QemuAccel,
    /// Kernel command line.
    #[arg(long, default_value = BOOT_PROBE_CMDLINE)]
    cmdline: String,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 256)]
    memory: u64,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Console line that means "booted".
    #[arg(long, default_value = isola_sandbox::READY_MARKER)]
    marker: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Print the report as JSON instead of the console and a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: BootArgs) -> anyhow::Result<ExitCode> {
    // The host's backend, kernel and initramfs, as a sandbox gets them; flags override.
    let host = isola_sandbox::placement::Host::load(None)?;
    let (kvm, kind) = (host.kvm, host.hypervisor(a.hypervisor));
    let spec = BootSpec {
        kernel: a.kernel.unwrap_or_else(|| host.config.kernel()),
        initrd: if a.no_initrd { None } else { Some(a.initrd.unwrap_or_else(|| host.config.initramfs())) },
        cmdline: a.cmdline,
        mem_mib: a.memory,
        vcpus: a.cpus,
        timeout: Duration::from_secs(a.timeout),
        accel: a.accel,
    };
    let mut stdout = std::io::stdout();
    let echo: Option<&mut dyn std::io::Write> = if a.json { None } else { Some(&mut stdout) };
    let report = boot(kind, kvm, &spec, &a.marker, echo).with_context(|| format!("booting on {kind}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprint!("{}", report.diagnostics);
        eprintln!("isola: {} on {} ({})", if report.success { "booted" } else { "FAILED" }, kind, kvm.describe());
        for p in &report.phases {
            eprintln!("  {:<16} {:>10.1} ms", p.name, p.us as f64 / 1000.0);
        }
    }
    Ok(if report.success { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
