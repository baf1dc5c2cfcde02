//! Container phases: a sandbox boots, the agent answers, a container running `true`
//! is created, started and exits, the VMM stops; and `runc run` of the same rootfs and
//! command as the peer (no VM) for the caller-seen total.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use isola_protocol::client::AgentClient;
use isola_protocol::{Request, Response, RootfsSource};
use isola_sandbox::container::{self, ContainerOptions};
use isola_sandbox::sandbox::{Sandbox, SandboxOptions};
use isola_sandbox::{state, BootSpec, HypervisorKind, KvmKind};

#[derive(Clone, Debug)]
pub struct ContainerBenchConfig {
    pub boot: BootSpec,
    pub hypervisor: HypervisorKind,
    pub kvm: KvmKind,
    pub rootfs: PathBuf,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// A sandbox for a benchmark, named `bench-<name>-<pid>`.
pub fn sandbox(cfg: &ContainerBenchConfig, name: &str) -> Result<Sandbox, String> {
    let opts = SandboxOptions {
        id: format!("bench-{name}-{}", std::process::id()),
        boot: cfg.boot.clone(),
        hypervisor: cfg.hypervisor,
        kvm: cfg.kvm,
        state_root: state::default_root(),
        tie_to_parent: true,
        network: Default::default(),
        netns: None,
    };
    Sandbox::start(&opts).map_err(|e| e.to_string())
}

/// A control connection with the sandbox set up and the bench rootfs provided for a
/// container named after the sandbox.
pub fn prepare(sb: &Sandbox, cfg: &ContainerBenchConfig) -> Result<(AgentClient, RootfsSource), String> {
    let mut c = sb.client().map_err(|e| e.to_string())?;
    c.call_ok(&Request::CreateSandbox { config: container::sandbox_config(&sb.state, &sb.id) })
        .map_err(|e| e.to_string())?;
    let rootfs = container::provide_rootfs(&c, &sb.state, &sb.id, &cfg.rootfs).map_err(|e| e.to_string())?;
    Ok((c, rootfs))
}

/// One sandbox + one `true` container; phases in µs since the VMM was spawned, and
/// `total` since this call began.
pub fn isola_run_once(cfg: &ContainerBenchConfig, n: usize) -> Result<BTreeMap<String, u64>, String> {
    let t0 = Instant::now();
    let mut sb = sandbox(cfg, &format!("run{n}"))?;
    let id = sb.id.clone();
    let base = sb.spawned.ok_or("the sandbox has no spawn time")?;
    let mut phases = BTreeMap::new();
    if let Some(d) = sb.agent_ready {
        phases.insert("agent_ready".to_string(), us(d));
    }
    let result = (|| -> Result<(), String> {
        let (mut c, rootfs) = prepare(&sb, cfg)?;
        let spec = container::spec(&ContainerOptions { args: vec!["true".into()], ..Default::default() })
            .map_err(|e| e.to_string())?;
        c.call(&Request::CreateContainer { id: id.clone(), spec: Box::new(spec), rootfs })
            .map_err(|e| e.to_string())?;
        phases.insert("container_created".into(), us(base.elapsed()));
        c.call(&Request::Start { id: id.clone(), exec_id: None }).map_err(|e| e.to_string())?;
        phases.insert("container_started".into(), us(base.elapsed()));
        match c.call_with(&Request::Wait { id: id.clone(), exec_id: None }, None).map_err(|e| e.to_string())? {
            Response::Exited { status } if status.code == 0 => {}
            other => return Err(format!("container ended with {other:?}")),
        }
        phases.insert("container_exited".into(), us(base.elapsed()));
        Ok(())
    })();
    sb.stop();
    phases.insert("vmm_exited".into(), us(base.elapsed()));
    phases.insert("total".into(), us(t0.elapsed()));
    result.map(|()| phases)
}

/// A runc bundle for `true` on `rootfs` (read-only root, no terminal).
pub fn runc_bundle(rootfs: &Path, dir: &Path) -> Result<(), String> {
    let out = Command::new("runc").arg("spec").current_dir(dir).output().map_err(|e| format!("runc spec: {e}"))?;
    if !out.status.success() {
        return Err(format!("runc spec: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let mut v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    v["process"]["args"] = serde_json::json!(["true"]);
    v["process"]["terminal"] = serde_json::json!(false);
    v["root"]["path"] = serde_json::json!(rootfs.display().to_string());
    v["root"]["readonly"] = serde_json::json!(true);
    std::fs::write(&path, v.to_string()).map_err(|e| e.to_string())
}

/// `runc run` of the bundle: the whole create-start-exit-delete as the caller sees it.
pub fn runc_run_once(bundle: &Path, n: usize) -> Result<BTreeMap<String, u64>, String> {
    let t0 = Instant::now();
    let id = format!("isola-bench-runc-{}-{n}", std::process::id());
    let st = Command::new("runc")
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("runc: {e}"))?;
    let total = us(t0.elapsed());
    if !st.status.success() {
        return Err(format!("runc run: {}", String::from_utf8_lossy(&st.stderr).trim()));
    }
    Ok(BTreeMap::from([("total".to_string(), total)]))
}

/// Whether `runc` is on PATH.
pub fn runc_available() -> bool {
    Command::new("runc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
