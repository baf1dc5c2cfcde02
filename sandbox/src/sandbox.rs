//! A running sandbox: a microVM with the agent listening on vsock, reachable through
//! a hybrid-vsock unix socket, whatever the backend.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use isola_protocol::client::{AgentClient, ClientError};
use isola_protocol::SandboxConfig;
use oci_spec::runtime::Spec;

use crate::agent::Agent;
use crate::backend::unprivileged;
use crate::cgroup::{self, Hierarchy, HostCgroup};
use crate::container::{Container, ContainerError, Rootfs};
use crate::hypervisor::HypervisorKind;
pub use crate::options::{NetworkMode, SandboxOptions, TemplateUse};

mod make_template;
mod processes;
use processes::Supervised;
pub mod resize;
mod restore;
use crate::state::{self, SandboxState};
use crate::volume::Volume;
use crate::watchdog::{Death, Watchdog, Watched};
pub use make_template::{make_template, make_template_waiting, MakeError};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox id {0:?}: use 1-64 of [A-Za-z0-9_.-]")]
    BadId(String),
    #[error("sandbox {0} already exists")]
    Exists(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("the guest agent did not come up within {timeout:?}: {cause}{log}")]
    AgentTimeout { timeout: Duration, cause: String, log: String },
    #[error("the VMM exited during boot ({status}){log}")]
    VmmDied { status: String, log: String },
    #[error(transparent)]
    Hypervisor(#[from] crate::hypervisor::HypervisorError),
    #[error("network: {0}")]
    Net(#[from] crate::net::NetError),
    #[error("pod network: {0}")]
    PodNet(#[from] crate::netns::PodNetError),
    #[error("configuring the sandbox: {0}")]
    Configure(ClientError),
    #[error("host cgroup: {0}")]
    Cgroup(crate::cgroup::CgroupError),
    #[error("{what} exited ({status}); the sandbox cannot go on{log}")]
    ProcessDied { what: String, status: String, log: String },
    #[error(transparent)]
    Ports(#[from] crate::backend::ports::PortError),
    #[error("publishing ports needs the bridge network (this sandbox has none)")]
    PortsWithoutNetwork,
    #[error("the sandbox's host identity: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

pub struct Sandbox {
    pub id: String,
    pub dir: PathBuf,
    pub state: SandboxState,
    /// When the VMM was spawned, and how long after that the agent first answered.
    pub spawned: Option<Instant>,
    pub agent_ready: Option<Duration>,
    agent: Agent,
    /// Every process it started, in start order.
    children: Vec<Supervised>,
    /// Kills the rest when one process dies during the sandbox's life (see watchdog.rs).
    watchdog: Option<Watchdog>,
    /// The host cgroup every process of the sandbox runs in (None: no memory controller).
    cgroup: Option<HostCgroup>,
    stopped: bool,
    /// Started by another process ([`Sandbox::adopt`]): its VMM and helpers are not
    /// our children.
    adopted: bool,
}

/// The most a guest's console log may hold (isola-vmm's own file-size limit; the
/// console pump's for QEMU): a guest that prints without end cannot fill the disk.
pub const CONSOLE_MAX_BYTES: u64 = 64 << 20;

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(15).collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut out = format!("\n--- last lines of {} ---\n", path.display());
    for l in lines.into_iter().rev() {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The error naming a process the watchdog saw die first.
fn died(d: Death) -> SandboxError {
    SandboxError::ProcessDied { what: d.what, status: d.status, log: tail(&d.log) }
}

/// The sandbox's subdirectory holding its vsock sockets (and nothing else: isola-vmm's
/// jail binds just this one).
pub const VSOCK_DIR: &str = "vsock";

/// isola-vmm's control API socket, in the sandbox directory (a template's VMM only).
pub const API_SOCK: &str = "api.sock";
/// QEMU's QMP socket in a sandbox's directory (the balloon's target), in a directory
/// only root may enter: QEMU binds it as root with whatever umask its starter had, and
/// no local user may reach QEMU's monitor.
pub const QMP_SOCK: &str = "qmp/qmp.sock";

/// How long one agent call may take before the host gives up on it.
pub const AGENT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The sandbox's CreateSandbox settings: its hostname, and its virtio-fs share if any.
pub fn sandbox_config(state: &SandboxState, hostname: &str, sysctls: &[(String, String)]) -> SandboxConfig {
    SandboxConfig {
        sysctls: sysctls.to_vec(),
        hostname: hostname.into(),
        shared_fs_tag: state.shared_dir.as_ref().map(|_| isola_protocol::SHARED_FS_TAG.to_string()),
        network: state.net.as_ref().map(crate::net::NetState::guest_config),
        dns: if state.net.is_some() { crate::net::host_dns() } else { vec![] },
        ..Default::default()
    }
}

/// Creates `dir` and missing parents, the last one unlistable by anyone but root (state
/// holds sockets and logs of every sandbox); others may only pass through it, as the
/// unprivileged vsock daemon must to reach its own directory.
fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o711).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

impl Sandbox {
    pub fn start(opts: &SandboxOptions) -> Result<Self, SandboxError> {
        isola_protocol::validate_id(&opts.id).map_err(|_| SandboxError::BadId(opts.id.clone()))?;
        opts.boot.validate()?;
        state::list(&opts.state_root);
        let dir = opts.state_root.join(&opts.id);
        create_private_dir_all(&opts.state_root).map_err(io(format!("creating {}", opts.state_root.display())))?;
        // The directory is made under a staging name that names its creator, gets its
        // state.json, and only then takes the sandbox's name: a creator killed at any
        // point leaves either a staged directory whose dead creator `state::list` sees
        // from its name, or a named one with a state, never a nameless empty one.
        let creator = state::Creator::me();
        let staged = state::staging_dir(&opts.state_root, &opts.id, creator);
        std::fs::DirBuilder::new().mode(0o711).create(&staged).map_err(io(format!("creating {}", staged.display())))?;
        let vsock_uds = dir.join(VSOCK_DIR).join("vsock.sock");
        let first = SandboxState {
            id: opts.id.clone(),
            hypervisor: opts.hypervisor,
            vmm_pid: 0,
            helper_pids: vec![],
            vsock_uds: vsock_uds.clone(),
            container: None,
            created_unix: state::now_unix(),
            shared_dir: None,
            net: None,
            creator,
            cgroup: None,
            ports: vec![],
            template: None,
            uid: None,
            disks: opts.disks.iter().map(|d| d.serial.clone()).collect(),
            memory: Some(state::VmMemory { mem_mib: opts.boot.mem_mib, balloon: opts.balloon }),
        };
        // Taking the name is the exclusive create itself: of two starts with one name,
        // exactly one gets the directory, the other "exists" (never each other's files).
        if let Err(e) = first.save(&staged).and_then(|()| state::take_name(&staged, &dir)) {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(match e.kind() {
                std::io::ErrorKind::AlreadyExists => SandboxError::Exists(opts.id.clone()),
                _ => io(format!("creating {}", dir.display()))(e),
            });
        }
        let mut sb = Sandbox::handle(dir.clone(), first, false);
        // On any error below, Drop kills what was started and removes the directory.
        // On record from here on: if we are killed, the next command cleans up.
        let uids = crate::config::Config::load()?.sandbox_uids.unwrap_or_default();
        let [root, _] = state::roots(&opts.state_root);
        let leases = crate::identity::default_leases();
        crate::identity::allocate(&leases, uids, &root, &opts.id, &state::holds_uid, |uid| {
            sb.state.uid = Some(uid);
            sb.state.save(&dir)
        })?;
        sb.make_vsock_dir()?;
        sb.cgroup = match Hierarchy::detect() {
            Some(h) => {
                let limit = (opts.boot.mem_mib << 20).saturating_add(crate::backend::overhead_bytes(opts.hypervisor));
                let cg = match &opts.cgroup_path {
                    Some(rel) => HostCgroup::create_at(&h, rel, limit),
                    None => HostCgroup::create(&h, &cgroup::name_for(&dir), limit),
                };
                let cg = cg.map_err(SandboxError::Cgroup)?;
                if opts.cgroup_path.is_some() {
                    // Recorded at once: cleanup after any exit removes it from the state.
                    sb.state.cgroup = Some(cg.dir.clone());
                    sb.state.save(&dir).map_err(io(format!("saving the state of {}", opts.id)))?;
                }
                Some(cg)
            }
            None => {
                log::warn!("no memory cgroup controller: the sandbox's processes run without a memory limit");
                None
            }
        };
        if let Some(ns) = &opts.netns {
            let pod = crate::netns::PodNet { deny: opts.network_deny.clone(), ..crate::netns::inspect(ns)? };
            sb.state.net = Some(crate::net::NetState::for_pod(pod));
        }
        let bridge = opts.network != NetworkMode::None && opts.netns.is_none();
        // The address stays reserved from allocation until the state (naming it) is saved.
        let _alloc = if bridge {
            // The warm pool's sandboxes share the bridge: one lock, every address seen.
            let [main, pool] = state::roots(&opts.state_root);
            let lock = crate::net::lock(&main)?;
            crate::net::ensure_bridge(&lock)?;
            let in_use: Vec<_> = [main, pool]
                .iter()
                .flat_map(|r| state::list(r))
                .filter_map(|(_, st)| st.net.as_ref().map(|n| n.ip))
                .collect();
            let ip = crate::net::allocate(&in_use)?;
            sb.state.net = Some(crate::net::NetState::for_sandbox(ip, opts.network_allow.clone()));
            Some(lock)
        } else {
            None
        };
        let restored = match &opts.template {
            TemplateUse::Restore(t) if opts.hypervisor == HypervisorKind::IsolaVmm => sb.restore(opts, t),
            _ => false,
        };
        if !restored {
            sb.spawn(opts, None)?;
            drop(_alloc);
            sb.come_up(opts.boot.timeout, false)?;
        }
        if matches!(opts.template, TemplateUse::Make(_)) {
            // A template's guest is snapshotted as it is: no identity of anyone's yet.
            return Ok(sb);
        }
        let config = sandbox_config(&sb.state, opts.hostname.as_deref().unwrap_or(&opts.id), &opts.sysctls);
        sb.agent.call(|c| c.create_sandbox(config)).map_err(SandboxError::Configure)?;
        Ok(sb)
    }

    /// A handle on a running sandbox another process started (a warm-pool member just
    /// claimed): its processes are known by pid only, and [`Sandbox::stop`] ends them
    /// as `isola rm` does.
    pub fn adopt(dir: PathBuf, state: SandboxState) -> Self {
        Self::handle(dir, state, true)
    }

    /// A handle on the sandbox in `dir`, with no process of ours yet.
    fn handle(dir: PathBuf, state: SandboxState, adopted: bool) -> Self {
        Sandbox {
            id: state.id.clone(),
            agent: Agent::new(&state.vsock_uds, AGENT_CALL_TIMEOUT),
            dir,
            state,
            children: vec![],
            watchdog: None,
            cgroup: None,
            stopped: false,
            spawned: None,
            agent_ready: None,
            adopted,
        }
    }

    /// An adopted sandbox's processes that died, by pid.
    fn check_adopted(&self) -> Result<(), SandboxError> {
        let vmm = crate::backend::vmm_exe(self.state.hypervisor);
        if !state::process_matches(self.state.vmm_pid, vmm) {
            return Err(SandboxError::ProcessDied {
                what: vmm.to_string(),
                status: "gone".into(),
                log: tail(&self.dir.join("vmm.log")),
            });
        }
        if let Some(pid) = self.state.helper_pids.iter().find(|p| !crate::procfs::running(**p)) {
            return Err(SandboxError::ProcessDied {
                what: format!("helper process {pid}"),
                status: "gone".into(),
                log: String::new(),
            });
        }
        Ok(())
    }

    /// Starts the VMM and its helpers (restoring the snapshot in `from`, if given).
    fn spawn(&mut self, opts: &SandboxOptions, from: Option<&Path>) -> Result<(), SandboxError> {
        let started = match opts.hypervisor {
            HypervisorKind::Qemu => self.start_qemu(opts),
            HypervisorKind::IsolaVmm => self.start_isola_vmm(opts, from),
        };
        // A step that failed because a process of the sandbox died reports that death.
        started.map_err(|e| self.check_processes().err().unwrap_or(e))
    }

    fn arm_watchdog(&mut self) -> Result<(), SandboxError> {
        let procs = self
            .children
            .iter()
            .map(|s| Watched { pid: s.child.id() as i32, what: s.what.clone(), log: self.dir.join(&s.log) })
            .collect();
        self.watchdog = Some(Watchdog::start(procs).map_err(io("starting the sandbox watchdog"))?);
        Ok(())
    }

    /// Whether every process of the sandbox still runs; names the first that died
    /// (a foreground run stops instead of hanging on a dead virtiofsd, say).
    pub fn check_processes(&mut self) -> Result<(), SandboxError> {
        if let Some(d) = self.watchdog.as_ref().and_then(Watchdog::death) {
            return Err(died(d));
        }
        if self.adopted {
            return self.check_adopted();
        }
        for s in &mut self.children {
            if let Ok(Some(st)) = s.child.try_wait() {
                return Err(SandboxError::ProcessDied {
                    what: s.what.clone(),
                    status: st.to_string(),
                    log: tail(&self.dir.join(&s.log)),
                });
            }
        }
        Ok(())
    }

    fn logs(&self) -> String {
        format!("{}{}", tail(&self.dir.join("vmm.log")), tail(&self.dir.join("console.log")))
    }

    /// Waits for the agent; a restored guest's is listening already (its console has
    /// no ready marker: that was printed before the snapshot).
    /// The VMM's exit, as an error, once it has ended.
    fn vmm_death(&mut self) -> Option<SandboxError> {
        let status = self.vmm_child()?.try_wait().ok()??;
        Some(SandboxError::VmmDied { status: status.to_string(), log: self.logs() })
    }

    fn wait_for_agent(&mut self, timeout: Duration, restored: bool) -> Result<(), SandboxError> {
        let until = Instant::now() + timeout;
        loop {
            // A helper that died first is the cause, not the VMM the watchdog then killed.
            if let Some(d) = self.watchdog.as_ref().and_then(Watchdog::death) {
                if self.children.iter().find(|s| s.vmm).is_none_or(|vmm| vmm.what != d.what) {
                    return Err(died(d));
                }
            }
            if let Some(e) = self.vmm_death() {
                return Err(e);
            }
            // Connecting before the guest's vsock driver is live can wedge
            // vhost-device-vsock's connection; the agent prints its marker once listening.
            let marked = || {
                let console = std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
                console.contains(isola_protocol::READY_AGENT_FIELD)
            };
            if !restored && !marked() {
                if Instant::now() > until {
                    return Err(SandboxError::AgentTimeout {
                        timeout,
                        cause: "no ready marker on the console".into(),
                        log: self.logs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            match AgentClient::connect(&self.state.vsock_uds, Duration::from_secs(2)).and_then(|mut c| c.ping()) {
                Ok(_) => {
                    self.agent_ready = self.spawned.map(|t| t.elapsed());
                    return Ok(());
                }
                Err(e @ ClientError::Version { .. }) => {
                    return Err(SandboxError::AgentTimeout { timeout, cause: e.to_string(), log: String::new() })
                }
                Err(e) if Instant::now() > until => {
                    return Err(SandboxError::AgentTimeout { timeout, cause: e.to_string(), log: self.logs() })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// The sandbox's agent (its control connection is shared with every handle).
    /// Publishes `ports` on the host (`-p`) through [`crate::ports`]' forwarder, recorded
    /// for `ps`/`inspect` and for the cleanup, which ends it however the sandbox ends.
    pub fn publish(
        &mut self,
        ports: &[crate::backend::ports::PortSpec],
        program: &Path,
        opts: &SandboxOptions,
    ) -> Result<(), SandboxError> {
        if ports.is_empty() {
            return Ok(());
        }
        let ip = match &self.state.net {
            Some(crate::net::NetState { ip, pod: None, .. }) => *ip,
            _ => return Err(SandboxError::PortsWithoutNetwork),
        };
        let (mut c, fds, prog) = crate::backend::ports::command(program, &self.dir, ip, self.state.vmm_pid, ports)?;
        // The cgroup join needs root: before the drop to the sandbox's own uid.
        self.confine_spawn(&mut c, opts);
        let id = self.state.host_uid();
        unprivileged::own_namespaces(&mut c, libc::CLONE_NEWIPC);
        unprivileged::drop_to(&mut c, id, id);
        crate::backend::helper_filter::install_before_exec(&mut c, crate::backend::helper_filter::For::Helper)
            .map_err(|e| crate::backend::ports::PortError::Spawn(std::io::Error::other(e.to_string())))?;
        let child = c.spawn().map_err(crate::backend::ports::PortError::Spawn)?;
        drop((fds, prog));
        self.state.helper_pids.push(child.id() as i32);
        self.state.ports = ports.to_vec();
        self.supervise(child, crate::backend::ports::EXE, "", false);
        self.state.save(&self.dir).map_err(io("saving sandbox state"))
    }

    pub fn agent(&self) -> Agent {
        self.agent.clone()
    }

    /// Whether its guest was given the disk `serial` (a template's restored VM has none).
    pub fn has_disk(&self, serial: &str) -> bool {
        self.state.disks.iter().any(|d| d == serial)
    }

    /// Creates container `id` in this sandbox; see [`Container::create`].
    pub fn create_container(
        &self,
        id: &str,
        spec: Spec,
        rootfs: Rootfs<'_>,
        volumes: &[Volume],
    ) -> Result<Container, ContainerError> {
        Container::create(self.agent(), self.state.shared_dir.clone(), id, spec, rootfs, volumes)
    }

    /// A handle on container `id`, created earlier.
    pub fn container(&self, id: &str) -> Container {
        Container::existing(self.agent(), self.state.shared_dir.clone(), id)
    }

    pub fn set_container(&mut self, id: &str) -> Result<(), SandboxError> {
        self.state.container = Some(id.into());
        self.state.save(&self.dir).map_err(io("saving sandbox state"))
    }

    /// Leaves the sandbox running when this handle goes away (`isola run -d`).
    pub fn detach(mut self) {
        if let Some(w) = self.watchdog.as_mut() {
            w.disarm();
        }
        self.stopped = true;
        self.children.clear();
    }

    /// Asks the guest to power off, then makes sure every process is gone and the
    /// directory removed.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Some(w) = self.watchdog.as_mut() {
            w.disarm();
        }
        if self.adopted {
            // Its processes are not our children (a forwarder of ours goes with the VMM).
            stop_by_state(&self.dir, &self.state);
            for s in &mut self.children {
                let _ = s.child.kill();
                let _ = s.child.wait();
            }
            return;
        }
        let _ = self.agent.shutdown();
        let until = Instant::now() + Duration::from_secs(5);
        if let Some(vmm) = self.vmm_child() {
            while Instant::now() < until {
                if matches!(vmm.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for s in self.children.iter_mut().rev() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        state::cleanup(&self.dir, Some(&self.state));
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops a sandbox started by another process (`isola rm`, `isola kill`); an
/// unreachable agent gets its VMM killed after a grace period.
pub fn stop_by_state(dir: &Path, st: &SandboxState) {
    let _ = st.agent(Duration::from_secs(2)).shutdown();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && state::process_matches(st.vmm_pid, crate::backend::vmm_exe(st.hypervisor)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    state::cleanup(dir, Some(st));
}
