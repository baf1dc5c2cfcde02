//! `isola update`: a running container's memory and CPU limits, as `docker update`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};

use crate::manage_cmd::{container_id, find};
use crate::sizes::{parse_cpus, parse_memory_mib};

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Memory limit (e.g. 256m, 1g): the container's cgroup in the guest, and the VM's
    /// balloon, which takes back what the guest may no longer use (up to the size the
    /// sandbox started with).
    #[arg(short = 'm', long, value_parser = parse_memory_mib)]
    memory: Option<u64>,
    /// CPUs, fractions allowed: the container's CPU quota in the guest (the VM's vCPUs
    /// stay as they are).
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<f64>,
    /// Print where the resize left the sandbox as JSON.
    #[arg(long)]
    json: bool,
    /// The sandbox.
    name: String,
}

/// CFS period for `--cpus` (Docker's).
const CPU_PERIOD: u64 = 100_000;

pub fn update(a: UpdateArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.memory.is_some() || a.cpus.is_some(), "nothing to update: give -m and/or --cpus");
    let (dir, st) = find(&a.name)?;
    let id = container_id(&a.name, &st)?;
    let mut r = LinuxResourcesBuilder::default();
    if let Some(mib) = a.memory {
        r = r.memory(LinuxMemoryBuilder::default().limit((mib << 20) as i64).build()?);
    }
    if let Some(cpus) = a.cpus {
        let quota = (cpus * CPU_PERIOD as f64).round() as i64;
        r = r.cpu(LinuxCpuBuilder::default().quota(quota).period(CPU_PERIOD).build()?);
    }
    let resized = isola_sandbox::sandbox::resize::update_container(&dir, &st, &id, r.build()?, Duration::from_secs(10))
        .with_context(|| format!("updating {}", a.name))?;
    match (&resized, a.json) {
        (Some(r), true) => println!("{}", serde_json::to_string(r)?),
        (Some(r), false) => println!(
            "{}: guest {} MiB, balloon {} MiB (target {}), host limit {} ({} ms)",
            a.name,
            r.guest_mib,
            r.balloon_actual_mib,
            r.balloon_target_mib,
            r.host_limit_bytes.map_or("-".into(), |b| format!("{} MiB", b >> 20)),
            r.took_ms
        ),
        (None, true) => println!("null"),
        (None, false) => println!("{}", a.name),
    }
    Ok(ExitCode::SUCCESS)
}
