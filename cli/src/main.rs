//! `isola`: run sandboxes in microVMs.

mod bench_cmd;
mod boot_cmd;

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
    /// Boot the guest (kernel + initramfs) once, show its console and the timings.
    Boot(boot_cmd::BootArgs),
    /// Benchmarks: boot-time phases side by side with QEMU.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCmd),
    /// Say what this host offers (KVM kind) and which backend isola would use.
    Info,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Boot(args) => boot_cmd::run(args),
        Cmd::Bench(cmd) => bench_cmd::run(cmd),
        Cmd::Info => {
            let kvm = isola_sandbox::detect_kvm();
            println!("kvm: {}", kvm.describe());
            println!("default backend: {}", isola_sandbox::choose(None, kvm));
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("isola: error: {e:#}");
            ExitCode::from(125)
        }
    }
}
