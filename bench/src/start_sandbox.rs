//! The Linux half of `isola bench start` on isola-vmm: the same sandbox and container
//! (`true`) booted cold and restored from a template, alternating. Phases from the
//! VMM's spawn: `vmm_ready` (isola-vmm's own clock: set up, or restored), the agent's
//! first answer, and the container's exit. And with clones: N sandboxes of each mode
//! at once, PSS per sandbox (its VMM, virtiofsd and what they fork).

use crate::container::{isola_run_from, options, ContainerBenchConfig};
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
    let t = isola_sandbox::sandbox::make_template(&options(cfg, "template"), dir.path())
        .map_err(|e| BenchError::Failed(format!("making the template: {e}")))?;
    let series = series(cfg, runs, &t)?;
    let density = if clones > 0 {
        vec![
            density_of(cfg, "linux cold", clones, TemplateUse::Off)?,
            density_of(cfg, "linux snapshot", clones, TemplateUse::Restore(t))?,
        ]
    } else {
        vec![]
    };
    Ok((series, density))
}

fn series(
    cfg: &ContainerBenchConfig,
    runs: usize,
    t: &isola_sandbox::template::Template,
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
            mode: mode.to_string(),
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
    let restore = matches!(template, TemplateUse::Restore(_));
    let mut sbs = Vec::with_capacity(n);
    for i in 0..n {
        let opts = isola_sandbox::sandbox::SandboxOptions {
            template: template.clone(),
            ..options(cfg, &format!("density{i}"))
        };
        let sb = isola_sandbox::sandbox::Sandbox::start(&opts)?;
        if restore && sb.state.template.is_none() {
            return Err(BenchError::Failed("a clone was not restored from its template (it booted cold)".into()));
        }
        sbs.push(sb);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let total: u64 = sbs.iter().map(|sb| sandbox_pss_kib(&sb.state)).sum();
    drop(sbs);
    Ok(DensityRow { mode: mode.into(), vmms: n, pss_kib_per_vmm: total / n.max(1) as u64 })
}

/// PSS of a sandbox's host processes and of every process they forked (the jailed VMM
/// is its supervisor's child, virtiofsd's sandbox is its launcher's), KiB.
fn sandbox_pss_kib(st: &isola_sandbox::state::SandboxState) -> u64 {
    let parent_of = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let all: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let mut ours: Vec<i32> = std::iter::once(st.vmm_pid).chain(st.helper_pids.iter().copied()).collect();
    let mut i = 0;
    while i < ours.len() {
        let p = ours[i];
        ours.extend(all.iter().copied().filter(|c| parent_of(*c) == Some(p)));
        i += 1;
    }
    ours.iter().filter_map(|p| crate::memory::of_pid(*p, 0)).map(|m| m.pss_kib).sum()
}
