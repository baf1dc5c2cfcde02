//! The Linux half of `isola bench start` on isola-vmm: the same sandbox and container
//! (`true`) booted cold and restored from a template, alternating, with the rootfs
//! over virtio-fs and then as an erofs disk (a template with a placeholder, no shared
//! memory). Phases from the VMM's spawn: `vmm_ready` (isola-vmm's own clock: set up,
//! or restored), the agent's first answer, and the container's exit. And with clones:
//! N sandboxes of each mode at once, PSS per sandbox (its VMM, virtiofsd and what they
//! fork).

use crate::container::{isola_run_from, options, sandbox_from, ContainerBenchConfig};
use crate::error::BenchError;
use crate::start::{DensityRow, ModeSeries};
use crate::stats::Summary;
use isola_sandbox::sandbox::TemplateUse;

/// Makes a template of `cfg`'s configuration in a scratch directory, then `runs`
/// sandboxes of each mode, then (`clones` > 0) that many of each mode at once.
pub fn run_sandbox_modes(
    cfg: &ContainerBenchConfig,
    runs: usize,
    clones: usize,
) -> Result<(Vec<ModeSeries>, Vec<DensityRow>), BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("isola-bench-templates-")
        .tempdir()
        .map_err(crate::error::io("scratch directory"))?;
    let (disk_cfg, _build_ms) = crate::container::with_disk(cfg, &dir.path().join("rootfs.erofs"))?;
    let mut series_all = Vec::new();
    let mut density = Vec::new();
    for (c, suffix) in [(cfg, ""), (&disk_cfg, " disk")] {
        let t = isola_sandbox::sandbox::make_template(&options(c, "template"), dir.path())
            .map_err(|e| BenchError::Failed(format!("making the template{suffix}: {e}")))?;
        series_all.extend(series(c, runs, &t, suffix)?);
        if clones > 0 {
            density.push(density_of(c, &format!("linux cold{suffix}"), clones, TemplateUse::Off)?);
            density.push(density_of(c, &format!("linux snapshot{suffix}"), clones, TemplateUse::Restore(t))?);
        }
    }
    Ok((series_all, density))
}

fn series(
    cfg: &ContainerBenchConfig,
    runs: usize,
    t: &isola_sandbox::template::Template,
    suffix: &str,
) -> Result<Vec<ModeSeries>, BenchError> {
    let modes = [("cold", TemplateUse::Off), ("snapshot", TemplateUse::Restore(t.clone()))];
    let mut samples: Vec<[Vec<u64>; 4]> = vec![Default::default(); modes.len()];
    let mut failures: Vec<Vec<String>> = vec![vec![]; modes.len()];
    for n in 0..runs {
        for (i, (mode, template)) in modes.iter().enumerate() {
            match isola_run_from(cfg, n, template.clone()) {
                Ok(p) => {
                    for (s, name) in
                        samples[i].iter_mut().zip(["vmm_ready", "agent_ready", "container_exited", "total"])
                    {
                        if let Some(us) = p.get(name) {
                            s.push(*us);
                        }
                    }
                }
                Err(e) => failures[i].push(format!("{mode}: {e}")),
            }
        }
    }
    Ok(modes
        .iter()
        .zip(samples.iter().zip(failures))
        .map(|((mode, _), ([ready, agent, exited, total], failures))| ModeSeries {
            mode: format!("{mode}{suffix}"),
            vmm_ready: Summary::of(ready),
            agent_ready: Summary::of(agent),
            container_exited: Summary::of(exited),
            wall: Summary::of(total),
            failures,
            ..Default::default()
        })
        .collect())
}

/// `n` sandboxes of one mode at once, each configured and idle; mean PSS per sandbox.
fn density_of(
    cfg: &ContainerBenchConfig,
    mode: &str,
    n: usize,
    template: TemplateUse,
) -> Result<DensityRow, BenchError> {
    let sbs =
        (0..n).map(|i| sandbox_from(cfg, &format!("density{i}"), template.clone())).collect::<Result<Vec<_>, _>>()?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let total = sbs.iter().map(sandbox_pss_kib).sum::<Result<u64, _>>()?;
    drop(sbs);
    Ok(DensityRow { mode: mode.into(), vmms: n, pss_kib_per_vmm: total / n.max(1) as u64 })
}

/// PSS of a sandbox ([`crate::memory::of_sandbox`]), KiB.
fn sandbox_pss_kib(sb: &isola_sandbox::sandbox::Sandbox) -> Result<u64, BenchError> {
    Ok(crate::memory::of_sandbox(sb, 0)?.pss_kib)
}
