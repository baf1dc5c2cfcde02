//! `isola pool fill|ls|stop`: the warm pool of booted, never-used sandboxes that
//! `isola run` takes from (see `isola_sandbox::pool`). Members are detached sandboxes;
//! a claim is refilled in the background by a detached copy of this binary (a `RefillJob`).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};

use anyhow::Context;
use clap::{Args, Subcommand};
use isola_sandbox::background::{self, Job};
use isola_sandbox::placement::{Host, Request, Vcpus};
use isola_sandbox::pool::{self, PoolKey};
use isola_sandbox::sandbox::{NetworkMode, Sandbox, SandboxOptions};
use isola_sandbox::{state, HypervisorKind};

#[derive(Subcommand, Debug)]
pub enum PoolCmd {
    /// Boot sandboxes until the pool for this configuration holds N; `isola run`
    /// with the same configuration then takes one instead of booting.
    Fill(FillArgs),
    /// List the pool's sandboxes.
    Ls,
    /// Stop every sandbox in the pool and forget the sizes asked for.
    Stop,
}

/// The configuration of the sandboxes, as `isola run` takes it.
#[derive(Args, Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PoolConfig {
    /// Memory as `isola run -m` (the VM gets this plus headroom).
    #[arg(short = 'm', long, value_parser = crate::sizes::parse_memory_mib)]
    pub memory: Option<u64>,
    /// vCPUs, as `isola run --cpus` rounds them.
    #[arg(long)]
    pub vcpus: Option<u8>,
    #[arg(long, default_value = "auto")]
    pub network: NetworkMode,
    #[arg(long)]
    pub hypervisor: Option<HypervisorKind>,
}

#[derive(Args, Debug)]
pub struct FillArgs {
    /// How many to keep ready (refills after a claim keep to it).
    #[arg(short = 'n', long, default_value_t = 1)]
    size: usize,
    #[command(flatten)]
    config: PoolConfig,
}

/// The options and key of a sandbox with this configuration.
pub fn options(c: &PoolConfig, id: &str, state_root: PathBuf) -> anyhow::Result<(SandboxOptions, PoolKey)> {
    options_with_disks(c, id, state_root, 0)
}

/// [`options`] with `slots` disk placeholders and no share (a template for images on
/// disks).
pub fn options_with_disks(
    c: &PoolConfig,
    id: &str,
    state_root: PathBuf,
    slots: usize,
) -> anyhow::Result<(SandboxOptions, PoolKey)> {
    // Pool members of a backend that can restore are restored too, when they can be.
    let req = Request {
        memory_mib: c.memory,
        vcpus: c.vcpus.map(Vcpus::Exactly),
        hypervisor: c.hypervisor,
        network: c.network,
        state_root: Some(state_root),
        disks: (0..slots).map(isola_sandbox::options::DiskAttach::placeholder).collect(),
        shared_fs: slots == 0,
        ..Request::new(id)
    };
    let opts = Host::load(None)?.place(&req).options;
    let key = PoolKey::new(opts.hypervisor, &opts.boot, c.network);
    Ok((opts, key))
}

pub fn fill(a: FillArgs) -> anyhow::Result<ExitCode> {
    let state_root = state::default_root();
    let (_, key) = options(&a.config, "", state_root.clone())?;
    pool::set_wanted_size(&state_root, &key, a.size)?;
    fill_to(&a.config, &state_root, &key)?;
    Ok(ExitCode::SUCCESS)
}

/// Boots members one at a time until the wanted size (read again after each, so
/// `isola pool stop` ends a fill) is ready; returns at once when another filler
/// works on this configuration.
fn fill_to(c: &PoolConfig, state_root: &std::path::Path, key: &PoolKey) -> anyhow::Result<()> {
    let dir = pool::root(state_root);
    let Some(_lock) = pool::fill_lock(state_root, key)? else { return Ok(()) };
    while pool::members(state_root, key).len() < pool::wanted_size(state_root, key) {
        let (opts, _) = options(c, &key.member_id(), dir.clone())?;
        let sb = Sandbox::start(&opts).with_context(|| format!("booting pool sandbox {}", opts.id))?;
        pool::mark_ready(&sb.dir)?;
        println!("{}", opts.id);
        sb.detach();
    }
    Ok(())
}

/// A refill after a claim: keeps to the size on record (which `isola pool stop` may
/// have cleared meanwhile) instead of setting it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RefillJob {
    config: PoolConfig,
}

impl Job for RefillJob {
    const NAME: &'static str = "pool-refill";
}

/// The detached refill's work.
pub fn refill(j: RefillJob) -> i32 {
    let state_root = state::default_root();
    let r = options(&j.config, "", state_root.clone()).and_then(|(_, key)| fill_to(&j.config, &state_root, &key));
    background::exit_code("isola: refilling the warm pool", r)
}

/// After a claim: a detached copy of this binary brings the pool back to its size.
pub fn refill_in_background(c: &PoolConfig, state_root: &std::path::Path, key: &PoolKey) {
    if pool::wanted_size(state_root, key) == 0 {
        return;
    }
    if let Err(e) = spawn_detached(&RefillJob { config: c.clone() }) {
        eprintln!("isola: warning: the warm pool is not refilled ({e})");
    }
}

/// This binary, detached in its own process group with no stdio, doing `job` in the
/// background (it outlives the run that started it).
pub fn spawn_detached<J: Job>(job: &J) -> std::io::Result<()> {
    let mut cmd = background::command(std::env::current_exe()?, job);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    cmd.spawn().map(drop)
}

pub fn run(cmd: PoolCmd) -> anyhow::Result<ExitCode> {
    let state_root = state::default_root();
    match cmd {
        PoolCmd::Fill(a) => fill(a),
        PoolCmd::Ls => {
            println!("{:<30} {:<10} {:>8} {:>6}", "SANDBOX", "BACKEND", "PID", "AGE");
            for (dir, st) in pool::all_members(&state_root) {
                let ready = if dir.join(pool::READY_FILE).exists() { "" } else { " (booting)" };
                let age = state::now_unix().saturating_sub(st.created_unix);
                println!("{:<30} {:<10} {:>8} {:>5}s{ready}", st.id, st.hypervisor.to_string(), st.vmm_pid, age);
            }
            Ok(ExitCode::SUCCESS)
        }
        PoolCmd::Stop => {
            println!("stopped {}", pool::stop_all(&state_root));
            Ok(ExitCode::SUCCESS)
        }
    }
}
