//! `isola ps`, `isola kill`, `isola rm`, `isola inspect`, `isola logs`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use isola_sandbox::state::{self, SandboxState};
use isola_sandbox::ContainerStatus;

/// A live sandbox by name.
pub fn find(name: &str) -> anyhow::Result<(PathBuf, SandboxState)> {
    state::list(&state::default_root())
        .into_iter()
        .find(|(_, st)| st.id == name)
        .with_context(|| format!("no running sandbox named {name}"))
}

/// A sandbox's container id (a sandbox runs one).
pub fn container_id(name: &str, st: &SandboxState) -> anyhow::Result<String> {
    st.container.clone().with_context(|| format!("sandbox {name} has no container"))
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Also sandboxes whose container has exited (until `isola rm`), with the exit code.
    #[arg(short = 'a', long)]
    all: bool,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

pub fn ps(a: PsArgs) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for (_, st) in state::list(&state::default_root()) {
        let container = st.agent(Duration::from_secs(2)).list().ok().and_then(|c| c.into_iter().next());
        let status = container
            .as_ref()
            .map(|c| format!("{:?}", c.status).to_lowercase())
            .unwrap_or_else(|| "unreachable".into());
        let exit_code = container.as_ref().and_then(|c| c.exit.as_ref()).map(|e| e.code);
        if exit_code.is_some() && !a.all {
            continue;
        }
        let ports: Vec<String> = st.ports.iter().map(ToString::to_string).collect();
        rows.push(serde_json::json!({
            "name": st.id, "hypervisor": st.hypervisor, "vmm_pid": st.vmm_pid, "container": status,
            "exit_code": exit_code, "ports": ports,
        }));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{:<24} {:<10} {:>8} {:<12} {:<5} PORTS", "NAME", "BACKEND", "PID", "CONTAINER", "EXIT");
        for r in &rows {
            let ports: Vec<&str> =
                r["ports"].as_array().map(|p| p.iter().filter_map(|p| p.as_str()).collect()).unwrap_or_default();
            println!(
                "{:<24} {:<10} {:>8} {:<12} {:<5} {}",
                r["name"].as_str().unwrap_or(""),
                r["hypervisor"].as_str().unwrap_or(""),
                r["vmm_pid"],
                r["container"].as_str().unwrap_or(""),
                r["exit_code"].as_i64().map(|c| c.to_string()).unwrap_or_default(),
                ports.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal number or name (TERM, KILL, ...).
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    sandbox: String,
}

pub fn kill(a: KillArgs) -> anyhow::Result<ExitCode> {
    let sig = isola_sandbox::signal::parse(&a.signal)? as i32;
    let (_, st) = find(&a.sandbox)?;
    let id = container_id(&a.sandbox, &st)?;
    st.container(&id, Duration::from_secs(10)).signal(sig, false)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Stop it even if its container still runs.
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(required = true)]
    sandboxes: Vec<String>,
}

pub fn rm(a: RmArgs) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for name in &a.sandboxes {
        let (dir, st) = match find(name) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("isola: {e}");
                failed = true;
                continue;
            }
        };
        if !a.force {
            let running = st
                .agent(Duration::from_secs(5))
                .list()
                .map(|list| list.iter().any(|c| c.exit.is_none() && c.status == ContainerStatus::Running))
                .unwrap_or(false);
            if running {
                eprintln!("isola: sandbox {name} is running (use -f)");
                failed = true;
                continue;
            }
        }
        isola_sandbox::sandbox::stop_by_state(&dir, &st);
        println!("{name}");
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Sandbox name.
    name: String,
}

/// Everything about one sandbox as JSON: its recorded state (backend, pids, network,
/// shared directory) and, when the agent answers, its containers with their stats.
pub fn inspect(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let (dir, st) = find(&a.name)?;
    let mut v = serde_json::json!({ "dir": dir, "state": st });
    match st.agent(Duration::from_secs(2)).list() {
        Ok(containers) => {
            let mut list = Vec::new();
            for ci in containers {
                let stats = st.container(&ci.id, Duration::from_secs(2)).stats().ok();
                let stats = stats.and_then(|s| serde_json::to_value(s).ok());
                list.push(serde_json::json!({ "info": ci, "stats": stats }));
            }
            v["containers"] = serde_json::Value::Array(list);
        }
        Err(e) => v["agent_error"] = serde_json::Value::String(e.to_string()),
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Sandbox name.
    name: String,
    /// At most this many bytes from the end.
    #[arg(long, default_value_t = 1 << 20)]
    tail_bytes: u32,
}

/// What a detached container printed (stdout and stderr, interleaved).
pub fn logs(a: LogsArgs) -> anyhow::Result<ExitCode> {
    let (_, st) = find(&a.name)?;
    let id = container_id(&a.name, &st)?;
    print!("{}", st.container(&id, Duration::from_secs(10)).logs(a.tail_bytes)?);
    Ok(ExitCode::SUCCESS)
}
