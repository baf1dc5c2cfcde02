//! The Linux half of `isola bench start` on isola-vmm: the same sandbox and container
//! (`true`) booted cold and restored from a template, alternating. Phases from the
//! VMM's spawn: `vmm_ready` (isola-vmm's own clock: set up, or restored), the agent's
//! first answer, and the container's exit.

use crate::container::{isola_run_from, options, ContainerBenchConfig};
use crate::error::BenchError;
use crate::start::ModeSeries;
use crate::stats::Summary;
use isola_sandbox::sandbox::TemplateUse;

/// Makes a template of `cfg`'s configuration in a scratch directory, then `runs`
/// sandboxes of each mode.
pub fn run_sandbox_modes(cfg: &ContainerBenchConfig, runs: usize) -> Result<Vec<ModeSeries>, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("isola-bench-templates-")
        .tempdir()
        .map_err(crate::error::io("scratch directory"))?;
    let t = isola_sandbox::sandbox::make_template(&options(cfg, "template"), dir.path())
        .map_err(|e| BenchError::Failed(format!("making the template: {e}")))?;
    let modes = [("cold", TemplateUse::Off), ("snapshot", TemplateUse::Restore(t))];
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
