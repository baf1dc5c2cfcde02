//! The pod's microVM as the task logic sees it: boot it, call its agent, watch it, stop
//! it. A trait, so the task logic (event order, state machine) is tested without a VM.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use isola_sandbox::agent::Agent;
use isola_sandbox::options::DiskAttach;
use isola_sandbox::sandbox::Sandbox;
use isola_sandbox::{Container, ContainerStats, ExitStatus, ProcessHandle, Rootfs, Streams};
use oci_spec::runtime::{LinuxResources, Process, Spec};

pub use crate::boot_request::BootRequest;
use crate::boot_request::{host, request};
use crate::error::TaskError;

pub trait Booter: Send + Sync {
    fn boot(&self, req: &BootRequest) -> Result<Arc<dyn Guest>, TaskError>;
    /// Where the VM named `name` will keep its state: recorded in the bundle before
    /// the boot starts, so a shim killed mid-boot is cleaned up from it.
    fn state_dir_for(&self, name: &str) -> PathBuf;
}

/// A booted VM with its agent ready. `exec_id` None means a container's init.
pub trait Guest: Send + Sync {
    /// Creates container `id`; its rootfs is in the share already (see `rootfs.rs`), or
    /// it is `disk`, which the VM was given at boot.
    fn create(&self, id: &str, spec: &Spec, disk: Option<&DiskAttach>) -> Result<(), TaskError>;
    /// Whether the VM was booted with the disk `serial`.
    fn has_disk(&self, serial: &str) -> bool;
    /// Lets the process run; its pid in the guest.
    fn start(&self, id: &str, exec_id: Option<&str>) -> Result<u32, TaskError>;
    fn exec(&self, id: &str, exec_id: &str, process: &Process) -> Result<(), TaskError>;
    fn signal(&self, id: &str, exec_id: Option<&str>, signal: i32, all: bool) -> Result<(), TaskError>;
    /// Removes the container, killing it if it runs.
    fn delete(&self, id: &str) -> Result<(), TaskError>;
    fn set_paused(&self, id: &str, paused: bool) -> Result<(), TaskError>;
    fn stats(&self, id: &str) -> Result<ContainerStats, TaskError>;
    fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), TaskError>;
    /// [`Guest::update`] of the container the whole VM was booted for: its memory
    /// limit resizes the VM too (its balloon and host cgroup).
    fn update_vm(&self, id: &str, resources: &LinuxResources) -> Result<(), TaskError> {
        self.update(id, resources)
    }
    fn resize(&self, id: &str, exec_id: Option<&str>, rows: u16, cols: u16) -> Result<(), TaskError>;
    /// Blocks until the process exits.
    fn wait(&self, id: &str, exec_id: Option<&str>) -> Result<ExitStatus, TaskError>;
    /// Every stream of the process (before it starts).
    fn attach(&self, id: &str, exec_id: Option<&str>, terminal: bool) -> Result<Streams, TaskError>;
    /// The host directory shared with the guest over virtio-fs.
    fn shared_dir(&self) -> Option<PathBuf>;
    /// Whether the VMM and its helpers all still run.
    fn alive(&self) -> bool;
    /// Powers the VM off and removes everything it had on the host.
    fn stop(&self);
    fn vmm_pid(&self) -> u32;
    /// The sandbox's state directory on the host (for cleanup after a shim crash).
    fn state_dir(&self) -> PathBuf;
}

/// Boots real sandboxes under the state root (`/run/isola` or `$ISOLA_STATE_DIR`).
#[derive(Clone, Copy, Debug, Default)]
pub struct VmBooter {
    /// Kill the VM when the booting thread's process dies: for a caller whose booting
    /// thread lives as long as the VM (`isola-runtime`'s keeper), never for the shim.
    pub tie_to_parent: bool,
}

impl Booter for VmBooter {
    fn boot(&self, r: &BootRequest) -> Result<Arc<dyn Guest>, TaskError> {
        // PDEATHSIG follows the spawning thread, and ttrpc's threads come and go:
        // after a shim crash, containerd's `delete` cleans up instead.
        let placed = host(r)?.place(&request(r, self.tie_to_parent));
        let sb = placed.start()?;
        if placed.wants_template(&sb) {
            crate::template_maker::spawn(r);
        }
        let vm = VmGuest {
            agent: sb.agent(),
            vmm_pid: sb.state.vmm_pid as u32,
            shared: sb.state.shared_dir.clone(),
            disks: sb.state.disks.clone(),
            dir: sb.dir.clone(),
            sandbox: Mutex::new(Some(sb)),
        };
        Ok(Arc::new(vm))
    }

    fn state_dir_for(&self, name: &str) -> PathBuf {
        isola_sandbox::state::default_root().join(name)
    }
}

/// The real VM: each call goes through the sandbox crate's container handle.
struct VmGuest {
    sandbox: Mutex<Option<Sandbox>>,
    agent: Agent,
    vmm_pid: u32,
    shared: Option<PathBuf>,
    /// Serials of the disks it was booted with.
    disks: Vec<String>,
    dir: PathBuf,
}

impl VmGuest {
    fn container(&self, id: &str) -> Container {
        Container::existing(self.agent.clone(), self.shared.clone(), id)
    }

    fn process(&self, id: &str, exec_id: Option<&str>) -> ProcessHandle {
        match exec_id {
            None => self.container(id).init(),
            Some(x) => self.container(id).process(x),
        }
    }
}

impl Guest for VmGuest {
    fn create(&self, id: &str, spec: &Spec, disk: Option<&DiskAttach>) -> Result<(), TaskError> {
        let rootfs = match disk {
            Some(d) => Rootfs::Disk { serial: &d.serial, fstype: &d.fstype, in_place: !d.read_only },
            None => Rootfs::InShare,
        };
        Container::create(self.agent.clone(), self.shared.clone(), id, spec.clone(), rootfs, &[])?;
        Ok(())
    }

    fn has_disk(&self, serial: &str) -> bool {
        self.disks.iter().any(|d| d == serial)
    }

    fn start(&self, id: &str, exec_id: Option<&str>) -> Result<u32, TaskError> {
        Ok(self.process(id, exec_id).start()? as u32)
    }

    fn exec(&self, id: &str, exec_id: &str, process: &Process) -> Result<(), TaskError> {
        self.container(id).exec(exec_id, process.clone())?;
        Ok(())
    }

    fn signal(&self, id: &str, exec_id: Option<&str>, signal: i32, all: bool) -> Result<(), TaskError> {
        Ok(self.process(id, exec_id).signal(signal, all)?)
    }

    fn delete(&self, id: &str) -> Result<(), TaskError> {
        Ok(self.container(id).delete(true)?)
    }

    fn set_paused(&self, id: &str, paused: bool) -> Result<(), TaskError> {
        Ok(self.container(id).set_paused(paused)?)
    }

    fn stats(&self, id: &str) -> Result<ContainerStats, TaskError> {
        Ok(self.container(id).stats()?)
    }

    fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), TaskError> {
        Ok(self.container(id).update(resources.clone())?)
    }

    fn update_vm(&self, id: &str, resources: &LinuxResources) -> Result<(), TaskError> {
        let st = isola_sandbox::state::SandboxState::load(&self.dir)
            .map_err(|source| TaskError::Io { what: format!("the state of {}", self.dir.display()), source })?;
        let timeout = std::time::Duration::from_secs(10);
        isola_sandbox::sandbox::resize::update_container(&self.dir, &st, id, resources.clone(), timeout)
            .map_err(|e| TaskError::FailedPrecondition(e.to_string()))?;
        Ok(())
    }

    fn resize(&self, id: &str, exec_id: Option<&str>, rows: u16, cols: u16) -> Result<(), TaskError> {
        Ok(self.process(id, exec_id).resize(rows, cols)?)
    }

    fn wait(&self, id: &str, exec_id: Option<&str>) -> Result<ExitStatus, TaskError> {
        Ok(self.process(id, exec_id).wait()?)
    }

    fn attach(&self, id: &str, exec_id: Option<&str>, terminal: bool) -> Result<Streams, TaskError> {
        Ok(self.process(id, exec_id).attach(terminal)?)
    }

    fn shared_dir(&self) -> Option<PathBuf> {
        self.shared.clone()
    }

    fn alive(&self) -> bool {
        match self.sandbox.lock() {
            Ok(mut sb) => sb.as_mut().is_some_and(|s| s.check_processes().is_ok()),
            Err(_) => false,
        }
    }

    fn stop(&self) {
        if let Ok(mut sb) = self.sandbox.lock() {
            // Dropping the sandbox powers it off and cleans up (processes, mounts, dir).
            drop(sb.take());
        }
    }

    fn vmm_pid(&self) -> u32 {
        self.vmm_pid
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.clone()
    }
}
