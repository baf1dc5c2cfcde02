//! Container phases: a sandbox boots, the agent answers, a container running `true`
//! is created, started and exits, the VMM stops; and `runc run` of the same rootfs and
//! command as the peer (no VM) for the caller-seen total.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use isola_sandbox::sandbox::{Sandbox, SandboxOptions, TemplateUse};
use isola_sandbox::spec::{self, ContainerOptions};
use isola_sandbox::volume::Volume;
use isola_sandbox::{BootSpec, Container, HypervisorKind, KvmKind, Rootfs};

use crate::error::{io, BenchError};

#[derive(Clone, Debug)]
pub struct ContainerBenchConfig {
    pub boot: BootSpec,
    pub hypervisor: HypervisorKind,
    pub kvm: KvmKind,
    pub rootfs: PathBuf,
    /// The rootfs as a read-only disk (an erofs image of `rootfs`) instead of over
    /// virtio-fs: the sandbox then has no share.
    pub disk: Option<isola_sandbox::options::DiskAttach>,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// The options of a benchmark's sandbox, named `bench-<name>-<pid>`.
pub fn options(cfg: &ContainerBenchConfig, name: &str) -> SandboxOptions {
    let o =
        SandboxOptions::new(format!("bench-{name}-{}", std::process::id()), cfg.boot.clone(), cfg.hypervisor, cfg.kvm);
    match &cfg.disk {
        Some(d) => SandboxOptions { disks: vec![d.clone()], shared_fs: false, ..o },
        None => o,
    }
}

/// `cfg` with its rootfs as an erofs disk built at `image` (the build's milliseconds).
pub fn with_disk(cfg: &ContainerBenchConfig, image: &Path) -> Result<(ContainerBenchConfig, u64), BenchError> {
    let started = Instant::now();
    isola_image::disk::build_erofs(&cfg.rootfs, image, 4 << 30).map_err(|e| BenchError::Failed(e.to_string()))?;
    let disk = isola_sandbox::options::DiskAttach {
        path: image.into(),
        serial: "isola-bench-root".into(),
        fstype: isola_image::disk::FSTYPE.into(),
        read_only: true,
    };
    Ok((ContainerBenchConfig { disk: Some(disk), ..cfg.clone() }, started.elapsed().as_millis() as u64))
}

/// A sandbox for a benchmark started as `template` says; one that should have been
/// restored and was not (it fell back to a cold boot) is an error.
pub fn sandbox_from(cfg: &ContainerBenchConfig, name: &str, template: TemplateUse) -> Result<Sandbox, BenchError> {
    let restore = matches!(template, TemplateUse::Restore(_));
    let sb = Sandbox::start(&SandboxOptions { template, ..options(cfg, name) })?;
    if restore && sb.state.template.is_none() {
        return Err(BenchError::Failed(format!("{} was not restored from its template (it booted cold)", sb.id)));
    }
    Ok(sb)
}

/// A sandbox for a benchmark, booted (see [`options`]).
pub fn sandbox(cfg: &ContainerBenchConfig, name: &str) -> Result<Sandbox, BenchError> {
    Ok(Sandbox::start(&options(cfg, name))?)
}

/// The bench rootfs running `args` as a container named after the sandbox, with `volumes`.
pub fn container(
    sb: &Sandbox,
    cfg: &ContainerBenchConfig,
    args: &[&str],
    volumes: &[Volume],
) -> Result<Container, BenchError> {
    let spec =
        spec::spec(&ContainerOptions { args: args.iter().map(|a| a.to_string()).collect(), ..Default::default() })?;
    let root = match &cfg.disk {
        Some(d) => Rootfs::Disk { serial: &d.serial, fstype: &d.fstype, in_place: false },
        None => Rootfs::Dir(&cfg.rootfs),
    };
    Ok(sb.create_container(&sb.id, spec, root, volumes)?)
}

/// One sandbox + one `true` container; phases in µs since the VMM was spawned, and
/// `total` since this call began.
pub fn isola_run_once(cfg: &ContainerBenchConfig, n: usize) -> Result<BTreeMap<String, u64>, BenchError> {
    isola_run_from(cfg, n, TemplateUse::Off)
}

/// [`isola_run_once`] of a sandbox restored from a template when `template` says so
/// (and one that was not is an error: it fell back to a cold boot). isola-vmm's own
/// `vmm_ready` (its setup, or its restore, done) is among the phases.
pub fn isola_run_from(
    cfg: &ContainerBenchConfig,
    n: usize,
    template: TemplateUse,
) -> Result<BTreeMap<String, u64>, BenchError> {
    let t0 = Instant::now();
    let mut sb = sandbox_from(cfg, &format!("run{n}"), template)?;
    let base = sb.spawned.ok_or(BenchError::Failed("the sandbox has no spawn time".into()))?;
    let mut phases = BTreeMap::new();
    let log = std::fs::read_to_string(sb.dir.join("vmm.log")).unwrap_or_default();
    for line in log.lines() {
        if let Some(isola_sandbox::boot::Event::Phase(p)) = isola_sandbox::boot::parse_event(line) {
            phases.insert(p.name, p.us);
        }
    }
    if let Some(d) = sb.agent_ready {
        phases.insert("agent_ready".to_string(), us(d));
    }
    let result = (|| -> Result<(), BenchError> {
        let c = container(&sb, cfg, &["true"], &[])?;
        phases.insert("container_created".into(), us(base.elapsed()));
        c.start()?;
        phases.insert("container_started".into(), us(base.elapsed()));
        let status = c.wait()?;
        if status.code != 0 {
            return Err(BenchError::Failed(format!("container ended with {status:?}")));
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
pub fn runc_bundle(rootfs: &Path, dir: &Path) -> Result<(), BenchError> {
    let out = Command::new("runc").arg("spec").current_dir(dir).output().map_err(io("runc spec"))?;
    if !out.status.success() {
        return Err(BenchError::Failed(format!("runc spec: {}", String::from_utf8_lossy(&out.stderr))));
    }
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| BenchError::Json { what: path.display().to_string(), source })?;
    v["process"]["args"] = serde_json::json!(["true"]);
    v["process"]["terminal"] = serde_json::json!(false);
    v["root"]["path"] = serde_json::json!(rootfs.display().to_string());
    v["root"]["readonly"] = serde_json::json!(true);
    std::fs::write(&path, v.to_string()).map_err(io(format!("writing {}", path.display())))
}

/// `runc run` of the bundle: the whole create-start-exit-delete as the caller sees it.
pub fn runc_run_once(bundle: &Path, n: usize) -> Result<BTreeMap<String, u64>, BenchError> {
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
        .map_err(io("runc"))?;
    let total = us(t0.elapsed());
    if !st.status.success() {
        return Err(BenchError::Failed(format!("runc run: {}", String::from_utf8_lossy(&st.stderr).trim())));
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
