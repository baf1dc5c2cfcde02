//! The pod's microVM as the task logic sees it: boot it, call its agent, watch it, stop
//! it. A trait, so the task logic (event order, state machine) is tested without a VM.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isola_protocol::client::AgentClient;
use isola_protocol::{ExitStatus, Request, Response, StdioStream};
use isola_sandbox::sandbox::{NetworkMode, Sandbox, SandboxOptions};
use isola_sandbox::{choose, detect_kvm};

use crate::error::ShimError;

/// What the first container of a pod tells about the VM to boot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BootRequest {
    /// The VM's (sandbox's) name: short, valid as a path component.
    pub name: String,
    pub hostname: String,
    /// The pod's network namespace, when CNI made one.
    pub netns: Option<PathBuf>,
    /// The container's memory limit and CPU count, if it sets them.
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u8>,
    /// `ConfigPath` from containerd's runtime options.
    pub config_path: Option<PathBuf>,
}

pub trait Booter: Send + Sync {
    fn boot(&self, req: &BootRequest) -> Result<Arc<dyn Guest>, ShimError>;
}

/// A booted VM with its agent ready.
pub trait Guest: Send + Sync {
    /// One request on a fresh connection.
    fn call(&self, req: &Request) -> Result<Response, ShimError>;
    /// Blocks until the process exits.
    fn wait(&self, id: &str, exec_id: Option<&str>) -> Result<ExitStatus, ShimError>;
    fn attach(&self, id: &str, exec_id: Option<&str>, stream: StdioStream) -> Result<UnixStream, ShimError>;
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

/// Guest memory beyond the container's own limit: kernel, agent, page cache.
pub const VM_HEADROOM_MIB: u64 = 128;
pub const MIN_VM_MIB: u64 = 256;

/// Boots real sandboxes under the state root (`/run/isola` or `$ISOLA_STATE_DIR`).
pub struct VmBooter;

impl Booter for VmBooter {
    fn boot(&self, r: &BootRequest) -> Result<Arc<dyn Guest>, ShimError> {
        let cfg = match &r.config_path {
            Some(p) => isola_sandbox::config::Config::load_from(p),
            None => isola_sandbox::config::Config::load(),
        }
        .map_err(|e| ShimError::Config(e.to_string()))?;
        let kvm = detect_kvm();
        let host_cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(64) as u8;
        let mut boot = cfg.boot_spec(r.memory_mib, r.vcpus, Duration::from_secs(60));
        boot.vcpus = boot.vcpus.clamp(1, host_cpus.max(1));
        let opts = SandboxOptions {
            id: r.name.clone(),
            boot,
            hypervisor: choose(cfg.hypervisor, kvm),
            kvm,
            state_root: isola_sandbox::state::default_root(),
            // PDEATHSIG follows the spawning thread, and ttrpc's threads come and go:
            // after a shim crash, containerd's `delete` cleans up instead.
            tie_to_parent: false,
            // Without a pod namespace a container has loopback only, as with runc.
            network: NetworkMode::None,
            netns: r.netns.clone(),
        };
        let sb = Sandbox::start(&opts)?;
        let config = isola_sandbox::container::sandbox_config(&sb.state, &r.hostname);
        let uds = sb.state.vsock_uds.clone();
        let vmm_pid = sb.state.vmm_pid as u32;
        let shared = sb.state.shared_dir.clone();
        let dir = sb.dir.clone();
        let vm = VmGuest { sandbox: Mutex::new(Some(sb)), uds, vmm_pid, shared, dir };
        vm.call(&Request::CreateSandbox { config })?;
        Ok(Arc::new(vm))
    }
}

struct VmGuest {
    sandbox: Mutex<Option<Sandbox>>,
    uds: PathBuf,
    vmm_pid: u32,
    shared: Option<PathBuf>,
    dir: PathBuf,
}

impl VmGuest {
    fn client(&self) -> Result<AgentClient, ShimError> {
        Ok(AgentClient::connect(&self.uds, Duration::from_secs(10))?)
    }
}

impl Guest for VmGuest {
    fn call(&self, req: &Request) -> Result<Response, ShimError> {
        Ok(self.client()?.call(req)?)
    }

    fn wait(&self, id: &str, exec_id: Option<&str>) -> Result<ExitStatus, ShimError> {
        let req = Request::Wait { id: id.into(), exec_id: exec_id.map(Into::into) };
        match self.client()?.call_with(&req, None)? {
            Response::Exited { status } => Ok(status),
            other => Err(isola_protocol::client::ClientError::Unexpected(Box::new(other)).into()),
        }
    }

    fn attach(&self, id: &str, exec_id: Option<&str>, stream: StdioStream) -> Result<UnixStream, ShimError> {
        Ok(self.client()?.attach(id, exec_id, stream)?)
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
