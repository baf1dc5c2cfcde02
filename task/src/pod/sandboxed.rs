//! The pod's VM as containerd 2.x's sandbox API drives it (`sandboxer = "shim"`):
//! CreateSandbox boots it with no pause container; the pod's containers then come
//! through the task API as in any pod, and Stop/Wait/Status/Shutdown act on the VM.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use isola_protocol::ContainerStats;
use std::time::SystemTime;

use super::{Inner, Pod};
use crate::error::TaskError;
use crate::guest::BootRequest;
use crate::pod_config::{self, PodConfig};
use crate::process::Exit;
use crate::spec;

/// A VM made by CreateSandbox.
pub struct SandboxVm {
    pub id: String,
    pub created_at: SystemTime,
    pub started: bool,
    /// Set once the VM is gone: stopped, shut down, or dead.
    pub exit: Option<Exit>,
}

/// What SandboxStatus reports.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxStatus {
    pub pid: u32,
    /// Started and running.
    pub ready: bool,
    pub created_at: SystemTime,
    pub exit: Option<Exit>,
}

fn sandbox<'a>(inner: &'a mut Inner, id: &str) -> Result<&'a mut SandboxVm, TaskError> {
    inner.sandbox.as_mut().filter(|s| s.id == id).ok_or_else(|| TaskError::NotFound(format!("sandbox {id}")))
}

impl Pod {
    /// Boots the pod's VM: in `netns` (CNI's), named, sized and placed as `config` says.
    pub fn create_sandbox(
        self: &Arc<Self>,
        id: &str,
        bundle: &str,
        netns: Option<PathBuf>,
        config: &PodConfig,
    ) -> Result<(), TaskError> {
        self.asked.store(true, Ordering::SeqCst);
        isola_protocol::validate_id(id).map_err(|e| TaskError::InvalidArgument(e.message))?;
        let mut inner = self.lock()?;
        if inner.guest.is_some() || inner.sandbox.is_some() {
            return Err(TaskError::AlreadyExists(format!("sandbox {id} (this shim has a VM)")));
        }
        let cgroup_path = match pod_config::cgroups_path(&config.cgroup_parent, id) {
            Some(p) => Some(spec::host_cgroup(&p)?),
            None => None,
        };
        let name = spec::vm_name(id);
        let hostname = if config.hostname.is_empty() { name.clone() } else { config.hostname.clone() };
        let req = BootRequest {
            name,
            hostname,
            netns,
            memory_mib: None,
            vcpus: None,
            config_path: self.sandbox_config.clone(),
            cgroup_path,
            sysctls: config.sysctls.clone(),
            ..BootRequest::default()
        };
        self.boot_vm(&mut inner, &req, bundle, id)?;
        inner.sandbox =
            Some(SandboxVm { id: id.to_string(), created_at: SystemTime::now(), started: false, exit: None });
        Ok(())
    }

    /// The VMM's pid and when the sandbox was created.
    pub fn start_sandbox(&self, id: &str) -> Result<(u32, SystemTime), TaskError> {
        let mut inner = self.lock()?;
        let pid = inner.guest.as_ref().map(|g| g.vmm_pid()).unwrap_or(0);
        let sb = sandbox(&mut inner, id)?;
        if sb.exit.is_some() {
            return Err(TaskError::FailedPrecondition(format!("sandbox {id} has stopped")));
        }
        sb.started = true;
        Ok((pid, sb.created_at))
    }

    /// Ends the VM; a task still running is reported exited. Stopping twice is fine.
    pub fn stop_sandbox(&self, id: &str) -> Result<(), TaskError> {
        let mut inner = self.lock()?;
        sandbox(&mut inner, id)?;
        Self::end_vm(&mut inner);
        self.exit_all(&mut inner);
        self.sandbox_ended(&mut inner, 0);
        Ok(())
    }

    /// Marks the sandbox-API VM (if any) gone and wakes its waiters.
    pub(super) fn sandbox_ended(&self, inner: &mut Inner, code: u32) {
        if let Some(sb) = inner.sandbox.as_mut() {
            sb.exit.get_or_insert_with(|| Exit { code, at: SystemTime::now() });
        }
        self.exited.notify_all();
    }

    /// Blocks until the VM is gone.
    pub fn wait_sandbox(&self, id: &str) -> Result<Exit, TaskError> {
        let mut inner = self.lock()?;
        loop {
            if let Some(exit) = &sandbox(&mut inner, id)?.exit {
                return Ok(exit.clone());
            }
            inner = self
                .exited
                .wait(inner)
                .map_err(|_| TaskError::FailedPrecondition("shim state lock poisoned".into()))?;
        }
    }

    pub fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, TaskError> {
        let mut inner = self.lock()?;
        let pid = inner.guest.as_ref().map(|g| g.vmm_pid()).unwrap_or(0);
        let running = inner.guest.is_some();
        let sb = sandbox(&mut inner, id)?;
        Ok(SandboxStatus {
            pid,
            ready: sb.started && sb.exit.is_none() && running,
            created_at: sb.created_at,
            exit: sb.exit.clone(),
        })
    }

    /// The pod's containers' cgroup statistics, added up (no limits: each has its own).
    pub fn sandbox_stats(&self, id: &str) -> Result<ContainerStats, TaskError> {
        let (guest, ids) = {
            let mut inner = self.lock()?;
            sandbox(&mut inner, id)?;
            let guest = Self::guest(&inner)?;
            (guest, inner.containers.keys().cloned().collect::<Vec<_>>())
        };
        let mut sum = ContainerStats::default();
        for c in ids {
            // A container that ended meanwhile has nothing to add.
            let Ok(s) = guest.stats(&c) else { continue };
            sum.cpu_usage_usec += s.cpu_usage_usec;
            sum.cpu_user_usec += s.cpu_user_usec;
            sum.cpu_system_usec += s.cpu_system_usec;
            sum.memory_current += s.memory_current;
            sum.memory_oom_kills += s.memory_oom_kills;
            sum.pids_current += s.pids_current;
            sum.io_read_bytes += s.io_read_bytes;
            sum.io_write_bytes += s.io_write_bytes;
        }
        Ok(sum)
    }
}
