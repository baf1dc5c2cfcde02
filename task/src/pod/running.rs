//! What is asked of a container that runs in the guest: exec, pause and resume,
//! stats, resource updates and terminal resizes.

use super::*;

impl Pod {
    pub fn exec(&self, id: &str, exec_id: &str, process: Process, stdio: StdioPaths) -> Result<(), TaskError> {
        isola_protocol::validate_id(exec_id).map_err(|e| TaskError::InvalidArgument(e.message))?;
        let mut inner = self.lock()?;
        let guest = Self::guest(&inner)?;
        let c = inner.containers.get_mut(id).ok_or_else(|| not_found(id, None))?;
        if c.role == Role::PodSandbox || c.init.status != Status::Running {
            return Err(TaskError::FailedPrecondition(format!("task {id} is not running")));
        }
        if c.execs.contains_key(exec_id) {
            return Err(TaskError::AlreadyExists(format!("process {exec_id} of task {id}")));
        }
        guest.exec(id, exec_id, &process)?;
        let bridge = Bridge::start(&*guest, id, Some(exec_id), &stdio)?;
        let standin = StandIn::spawn(&self.standin, &[id, exec_id])?;
        c.execs.insert(exec_id.into(), Proc::new(stdio, standin, Some(bridge)));
        self.events.send(Event::ExecAdded { id: id.into(), exec_id: exec_id.into() });
        Ok(())
    }

    pub(super) fn in_guest(&self, id: &str) -> Result<(Arc<dyn Guest>, Role), TaskError> {
        let inner = self.lock()?;
        let c = inner.containers.get(id).ok_or_else(|| not_found(id, None))?;
        Ok((Self::guest(&inner)?, c.role))
    }

    pub fn pause(&self, id: &str, paused: bool) -> Result<(), TaskError> {
        let (guest, role) = self.in_guest(id)?;
        if role != Role::PodSandbox {
            let id = id.to_string();
            guest.set_paused(&id, paused)?;
        }
        let mut inner = self.lock()?;
        if let Some(c) = inner.containers.get_mut(id) {
            c.init.status = if paused { Status::Paused } else { Status::Running };
        }
        self.events.send(if paused { Event::Paused { id: id.into() } } else { Event::Resumed { id: id.into() } });
        Ok(())
    }

    pub fn stats(&self, id: &str) -> Result<isola_protocol::ContainerStats, TaskError> {
        let (guest, role) = self.in_guest(id)?;
        if role == Role::PodSandbox {
            return Ok(Default::default());
        }
        guest.stats(id)
    }

    pub fn update(&self, id: &str, resources: LinuxResources) -> Result<(), TaskError> {
        let (guest, role) = self.in_guest(id)?;
        match role {
            Role::PodSandbox => {}
            // Its own VM: resized with it (docker update -m through isola-runtime).
            Role::Standalone => guest.update_vm(id, &resources)?,
            Role::InPod => guest.update(id, &resources)?,
        }
        // The host's view follows: the member's own cgroup carries the new limits.
        let host = self.lock()?.containers.get(id).and_then(|c| c.host_cgroup.clone());
        if let Some(cg) = host {
            cg.apply(&isola_sandbox::limits_cgroup::Limits::from_oci(&resources))
                .map_err(|e| TaskError::FailedPrecondition(format!("{id}: host cgroup: {e}")))?;
        }
        Ok(())
    }

    pub fn resize(&self, id: &str, exec_id: &str, cols: u16, rows: u16) -> Result<(), TaskError> {
        let exec = exec_key(exec_id);
        let terminal = {
            let mut inner = self.lock()?;
            Self::find(&mut inner, id, exec)?.1.stdio.terminal
        };
        // A process without a terminal has nothing to resize: ignored, as runc does.
        if !terminal {
            return Ok(());
        }
        let (guest, _) = self.in_guest(id)?;
        guest.resize(id, exec, rows, cols)?;
        Ok(())
    }
}
