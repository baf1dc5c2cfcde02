//! `isola`: run sandboxes in microVMs.

mod bench_ab_cmd;
mod bench_cmd;
mod bench_start_cmd;
mod boot_cmd;
mod cp_cmd;
mod image_cmd;
mod lifecycle_cmd;
mod manage_cmd;
mod output;
mod pool_cmd;
mod progress;
mod reap_cmd;
mod run_cmd;
mod sizes;
mod template_cmd;
mod update_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "isola", version, about = "Containers in their own microVMs")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a command in a container in a new microVM.
    Run(run_cmd::RunArgs),
    /// Run another process in a running sandbox's container.
    Exec(run_cmd::ExecArgs),
    /// List running sandboxes (-a: exited ones too, with their exit codes).
    Ps(manage_cmd::PsArgs),
    /// Send a signal to a sandbox's container.
    Kill(manage_cmd::KillArgs),
    /// Stop and remove sandboxes.
    Rm(manage_cmd::RmArgs),
    /// Copy files or directories between the host and a sandbox: NAME:PATH on one side.
    Cp(cp_cmd::CpArgs),
    /// Stop a sandbox's container: SIGTERM, then SIGKILL after -t seconds.
    Stop(lifecycle_cmd::StopArgs),
    /// Wait for a sandbox's container to exit and print its exit code.
    Wait(lifecycle_cmd::WaitArgs),
    /// CPU, memory, pids and block I/O of sandboxes' containers (guest cgroups).
    Stats(lifecycle_cmd::StatsArgs),
    /// Change a running container's memory and CPU limits (as `docker update`).
    Update(update_cmd::UpdateArgs),
    /// Print what a detached container wrote to stdout and stderr.
    Logs(manage_cmd::LogsArgs),
    /// Show a sandbox as JSON: state, network, containers and their stats.
    Inspect(manage_cmd::InspectArgs),
    /// Boot the guest (kernel + initramfs) once, show its console and the timings.
    Boot(boot_cmd::BootArgs),
    /// Benchmarks: boot-time phases side by side with QEMU.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCmd),
    /// Pull an image from a registry into the local store.
    Pull(image_cmd::PullArgs),
    /// List stored images.
    Images(image_cmd::ImagesArgs),
    /// Remove stored images.
    Rmi(image_cmd::RmiArgs),
    /// Keep credentials for a registry (password on stdin); checked before they are kept.
    Login(image_cmd::LoginArgs),
    /// Forget a registry's credentials.
    Logout(image_cmd::LogoutArgs),
    /// Import an OCI layout, oci-archive or docker-archive.
    Import(image_cmd::ImportArgs),
    /// The warm pool of booted sandboxes `isola run` takes from (fill, ls, stop).
    #[command(subcommand)]
    Pool(pool_cmd::PoolCmd),
    /// isola-vmm snapshots of a booted guest that runs restore instead of booting
    /// (warm, ls, rm).
    #[command(subcommand)]
    Template(template_cmd::TemplateCmd),
    /// Say what this host offers (KVM kind) and which backend isola would use.
    Info,
}

fn main() -> ExitCode {
    // Background work this binary hands to detached copies of itself
    // (isola_sandbox::background): first the port forwarder of `isola run -p` (as
    // nobody, before reading any configuration)…
    isola_sandbox::background::run_if(isola_sandbox::backend::ports::forward);
    // RUST_LOG wins; then `log_level` from the host config; then warnings only.
    let level = isola_sandbox::config::Config::load().ok().and_then(|c| c.log_level).unwrap_or_else(|| "warn".into());
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    // …then the cleaner of a foreground run, pool refills and template warm-ups.
    isola_sandbox::background::run_if(reap_cmd::reap);
    isola_sandbox::background::run_if(pool_cmd::refill);
    isola_sandbox::background::run_if(template_cmd::warm_job);
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Boot(args) => boot_cmd::run(args),
        Cmd::Run(args) => run_cmd::run(args),
        Cmd::Exec(args) => run_cmd::exec(args),
        Cmd::Ps(args) => manage_cmd::ps(args),
        Cmd::Kill(args) => manage_cmd::kill(args),
        Cmd::Rm(args) => manage_cmd::rm(args),
        Cmd::Cp(args) => cp_cmd::cp(args),
        Cmd::Stop(args) => lifecycle_cmd::stop(args),
        Cmd::Wait(args) => lifecycle_cmd::wait(args),
        Cmd::Stats(args) => lifecycle_cmd::stats(args),
        Cmd::Update(args) => update_cmd::update(args),
        Cmd::Inspect(args) => manage_cmd::inspect(args),
        Cmd::Logs(args) => manage_cmd::logs(args),
        Cmd::Bench(cmd) => bench_cmd::run(cmd),
        Cmd::Pull(a) => image_cmd::pull(a),
        Cmd::Images(a) => image_cmd::images(a),
        Cmd::Rmi(a) => image_cmd::rmi(a),
        Cmd::Import(a) => image_cmd::import(a),
        Cmd::Login(a) => image_cmd::login(a),
        Cmd::Logout(a) => image_cmd::logout(a),
        Cmd::Pool(cmd) => pool_cmd::run(cmd),
        Cmd::Template(cmd) => template_cmd::run(cmd),
        Cmd::Info => info(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("isola: error: {e:#}");
            ExitCode::from(125)
        }
    }
}

/// What this host is and which backend a run gets here, and why.
fn info() -> anyhow::Result<ExitCode> {
    let kvm = isola_sandbox::detect_kvm();
    let requested = isola_sandbox::config::Config::load()?.hypervisor;
    println!("kvm: {}", kvm.describe());
    println!("default backend: {}", isola_sandbox::choose(requested, kvm));
    println!("because: {}", isola_sandbox::hypervisor::choice_reason(requested, kvm));
    Ok(ExitCode::SUCCESS)
}
