//! Resizing a running sandbox's memory (`isola update -m`, `docker update -m`, CRI
//! `UpdateContainerResources`): its guest gets the container's new limit plus the
//! usual headroom out of the RAM the VM booted with, and the balloon holds the rest.
//!
//! Shrinking: the balloon inflates (the guest hands pages over, which leave the host at
//! once), then the VM's host cgroup limit comes down to the new size plus the VMM's
//! overhead, never below what the VM uses at that moment (a lower limit would OOM-kill
//! the VMM, not the container). Growing: the host limit goes up first, then the balloon
//! deflates. Growing past the booted size needs memory hotplug (virtio-mem, not built
//! yet): it is refused with the size to restart with. The container's own cgroup in the
//! guest is the caller's to set (before shrinking, after growing).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cgroup::{self, CgroupError, Hierarchy};
use crate::config::VM_HEADROOM_MIB;
use crate::hypervisor::HypervisorKind;
use crate::state::{SandboxState, VmMemory};

#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    #[error("sandbox {0} has no balloon to resize it with (started with --no-balloon, or by an older isola)")]
    NoBalloon(String),
    #[error(
        "sandbox {id}: a limit of {limit_mib} MiB needs {want} MiB of guest RAM, more than the {booted} MiB it \
         booted with (growing past that needs a restart with -m {limit_mib}m)"
    )]
    TooLarge { id: String, limit_mib: u64, want: u64, booted: u64 },
    #[error("sandbox {id}: its VMM: {why}")]
    Vmm { id: String, why: String },
    #[error("sandbox {id}: its host cgroup: {source}")]
    Cgroup { id: String, source: CgroupError },
    #[error("sandbox {id}: the container's cgroup in the guest: {source}")]
    Guest { id: String, source: crate::container::ContainerError },
}

/// Where a resize left the sandbox.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Resized {
    /// Guest RAM outside the balloon: the new limit plus headroom.
    pub guest_mib: u64,
    pub balloon_target_mib: u64,
    /// What the guest holds in its balloon when the wait ended.
    pub balloon_actual_mib: u64,
    /// The VM's host cgroup limit, when it has one.
    pub host_limit_bytes: Option<u64>,
    pub took_ms: u64,
}

/// Guest RAM for a container limit (`None`: no limit, all of it).
pub fn guest_mib_for(limit_bytes: Option<u64>, booted_mib: u64) -> u64 {
    limit_bytes.map_or(booted_mib, |b| b.div_ceil(1 << 20) + VM_HEADROOM_MIB)
}

/// How long a resize waits for the guest to reach the balloon's target.
pub const SETTLE: Duration = Duration::from_secs(10);

/// The sandbox's memory as booted and the guest RAM a container limit of
/// `limit_bytes` needs; refused when it has no balloon or the VM cannot give that much.
fn fit(st: &SandboxState, limit_bytes: Option<u64>) -> Result<(VmMemory, u64), ResizeError> {
    let mem = st.memory.filter(|m| m.balloon).ok_or_else(|| ResizeError::NoBalloon(st.id.clone()))?;
    let want = guest_mib_for(limit_bytes, mem.mem_mib);
    if want > mem.mem_mib {
        let limit_mib = limit_bytes.unwrap_or(0) >> 20;
        return Err(ResizeError::TooLarge { id: st.id.clone(), limit_mib, want, booted: mem.mem_mib });
    }
    Ok((mem, want))
}

/// Resizes the sandbox in `dir` for a container limit of `limit_bytes`.
pub fn resize(dir: &Path, st: &SandboxState, limit_bytes: Option<u64>) -> Result<Resized, ResizeError> {
    let started = Instant::now();
    let id = st.id.clone();
    let (mem, want) = fit(st, limit_bytes)?;
    let target = mem.mem_mib - want;
    let vmm = Vmm { dir, kind: st.hypervisor, mem_mib: mem.mem_mib };
    let before = vmm.balloon_mib().map_err(|why| ResizeError::Vmm { id: id.clone(), why })?;
    let host = Hierarchy::detect().and_then(|h| Some((st.cgroup.clone().or_else(|| cgroup::dir_for(dir))?, h)));
    let host_limit = (want << 20) + crate::backend::overhead_bytes(st.hypervisor);
    let set_host = |bytes: u64| -> Result<Option<u64>, ResizeError> {
        let Some((cg, h)) = &host else { return Ok(None) };
        // Never below what the VM holds now: that would end the VMM, not shrink it.
        let bytes = bytes.max(cgroup::usage(h, cg).unwrap_or(0));
        cgroup::set_limit(h, cg, bytes).map_err(|source| ResizeError::Cgroup { id: id.clone(), source })?;
        Ok(Some(bytes))
    };
    let growing = target < before;
    let mut host_limit_bytes = None;
    if growing {
        host_limit_bytes = set_host(host_limit)?;
    }
    vmm.set_balloon_mib(target).map_err(|why| ResizeError::Vmm { id: id.clone(), why })?;
    let mut actual = before;
    while started.elapsed() < SETTLE {
        actual = vmm.balloon_mib().map_err(|why| ResizeError::Vmm { id: id.clone(), why })?;
        if actual.abs_diff(target) <= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !growing {
        host_limit_bytes = set_host(host_limit)?;
    }
    Ok(Resized {
        guest_mib: want,
        balloon_target_mib: target,
        balloon_actual_mib: actual,
        host_limit_bytes,
        took_ms: started.elapsed().as_millis() as u64,
    })
}

/// Applies `resources` to container `container` of the sandbox in `dir`: its cgroup in
/// the guest, then, when they name a memory limit and the sandbox has a balloon, the
/// VM ([`resize`]). A limit the VM cannot reach is refused before anything changes.
pub fn update_container(
    dir: &Path,
    st: &SandboxState,
    container: &str,
    resources: oci_spec::runtime::LinuxResources,
    timeout: Duration,
) -> Result<Option<Resized>, ResizeError> {
    let limit = resources.memory().as_ref().and_then(|m| m.limit());
    // -1 (or any negative) is "no limit": all of the VM.
    let limit = limit.map(|l| u64::try_from(l).ok());
    let balloon = st.memory.is_some_and(|m| m.balloon);
    if let (Some(limit), true) = (limit, balloon) {
        fit(st, limit)?;
    }
    st.container(container, timeout)
        .update(resources)
        .map_err(|source| ResizeError::Guest { id: st.id.clone(), source })?;
    match limit {
        Some(limit) if balloon => resize(dir, st, limit).map(Some),
        _ => Ok(None),
    }
}

/// The sandbox's VMM as far as its balloon goes.
struct Vmm<'a> {
    dir: &'a Path,
    kind: HypervisorKind,
    mem_mib: u64,
}

const ASK: Duration = Duration::from_secs(5);

impl Vmm<'_> {
    fn set_balloon_mib(&self, mib: u64) -> Result<(), String> {
        match self.kind {
            HypervisorKind::IsolaVmm => {
                crate::backend::isola_vmm::control(&self.dir.join(super::API_SOCK), &format!("balloon {mib}"), ASK)
                    .map(drop)
            }
            // QMP's `balloon` takes the guest's size, not the balloon's.
            HypervisorKind::Qemu => {
                let value = (self.mem_mib - mib.min(self.mem_mib)) << 20;
                crate::backend::qmp::execute(&self.dir.join(super::QMP_SOCK), "balloon", json!({ "value": value }), ASK)
                    .map(drop)
            }
        }
    }

    /// What the guest holds in its balloon now.
    fn balloon_mib(&self) -> Result<u64, String> {
        match self.kind {
            HypervisorKind::IsolaVmm => {
                let line = crate::backend::isola_vmm::control(&self.dir.join(super::API_SOCK), "balloon", ASK)?;
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix("actual_mib=")?.parse().ok())
                    .ok_or_else(|| format!("isola-vmm's balloon answer {line:?} has no actual_mib"))
            }
            HypervisorKind::Qemu => {
                let v = crate::backend::qmp::execute(&self.dir.join(super::QMP_SOCK), "query-balloon", json!({}), ASK)?;
                let guest = v["actual"].as_u64().ok_or_else(|| format!("QEMU's query-balloon answered {v}"))?;
                Ok(self.mem_mib.saturating_sub(guest >> 20))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_becomes_guest_ram_with_headroom_and_none_is_all_of_it() {
        assert_eq!(guest_mib_for(Some(64 << 20), 512), 64 + VM_HEADROOM_MIB);
        assert_eq!(guest_mib_for(Some((64 << 20) + 1), 512), 65 + VM_HEADROOM_MIB, "rounded up");
        assert_eq!(guest_mib_for(None, 512), 512);
    }

    #[test]
    fn growing_past_the_booted_size_is_refused_with_what_to_do() {
        let d = tempfile::tempdir().expect("tmp");
        let mut st = crate::state::test_state("big");
        st.memory = Some(crate::state::VmMemory { mem_mib: 256, balloon: true });
        let e = resize(d.path(), &st, Some(1 << 30)).expect_err("too large");
        assert!(matches!(e, ResizeError::TooLarge { want: 1152, booted: 256, .. }), "{e}");
        assert!(e.to_string().contains("-m 1024m"), "{e}");
        st.memory = Some(crate::state::VmMemory { mem_mib: 256, balloon: false });
        assert!(matches!(resize(d.path(), &st, Some(1 << 20)), Err(ResizeError::NoBalloon(_))));
    }
}
