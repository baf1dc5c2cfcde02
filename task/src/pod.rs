//! The tasks of one shim: a pod's containers and their processes in one microVM. Plain
//! methods with typed inputs, so the state machine and the event order are tested with
//! a fake guest; `task.rs` adapts them to containerd's Task service.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use oci_spec::runtime::{LinuxResources, Process, Spec};

use crate::error::TaskError;
use crate::event::{Event, EventSink};
use crate::guest::{BootRequest, Booter, Guest};
pub use crate::process::{Container, Exit, Proc, Status};
use crate::rootfs::{self, RootMount};
use crate::spec::{self, Role};
use crate::standin::{StandIn, StandInCommand};
use crate::stdio::{Bridge, StdioPaths};
pub use sandboxed::{SandboxStatus, SandboxVm};

mod running;
mod sandboxed;
mod vm;

/// Exit code reported when the VM (not the process) went away.
pub const VM_GONE_EXIT: u32 = 255;
/// How long after an exit the output may still drain.
const DRAIN: Duration = Duration::from_secs(2);
/// How long a failed signal waits for the exit it may have raced.
const RACE_GRACE: Duration = Duration::from_secs(1);

/// What containerd's Create carries.
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: String,
    pub rootfs: Vec<RootMount>,
    pub stdio: StdioPaths,
    pub config_path: Option<PathBuf>,
}

#[derive(Default)]
struct Inner {
    guest: Option<Arc<dyn Guest>>,
    /// The container whose delete ends the VM: the pod sandbox, or a standalone container.
    owner: Option<String>,
    /// The VM's share, kept after the VM is gone so deletes still unmount.
    shared: Option<PathBuf>,
    containers: HashMap<String, Container>,
    /// Exits of processes deleted lately, for a Wait that wakes after the delete
    /// (bounded: the oldest go first).
    gone: std::collections::VecDeque<((String, Option<String>), Exit)>,
    /// The VM as containerd's sandbox API made it (`sandboxer = "shim"`).
    sandbox: Option<SandboxVm>,
}

/// How many deleted processes' exits are kept for late Waits.
const GONE_KEPT: usize = 64;

impl Inner {
    /// Keeps a deleted process's exit for a Wait that wakes after the delete.
    fn remember(&mut self, id: &str, exec: Option<&str>, exit: &Exit) {
        self.gone.push_back(((id.to_string(), exec.map(String::from)), exit.clone()));
        while self.gone.len() > GONE_KEPT {
            self.gone.pop_front();
        }
    }
}

pub struct Pod {
    booter: Box<dyn Booter>,
    events: Arc<dyn EventSink>,
    standin: StandInCommand,
    sandbox_config: Option<PathBuf>,
    inner: Mutex<Inner>,
    /// Signalled on every exit, for Wait.
    exited: Condvar,
    /// A Create has arrived (whatever became of it).
    asked: std::sync::atomic::AtomicBool,
}

fn not_found(id: &str, exec_id: Option<&str>) -> TaskError {
    match exec_id {
        Some(x) => TaskError::NotFound(format!("process {x} of task {id}")),
        None => TaskError::NotFound(format!("task {id}")),
    }
}

fn exec_key(exec_id: &str) -> Option<&str> {
    (!exec_id.is_empty()).then_some(exec_id)
}

impl Pod {
    /// `sandbox_config`: the isola config for a VM the sandbox API makes (containerd's
    /// runtime options reach `start`, not CreateSandbox).
    pub fn new(booter: Box<dyn Booter>, events: Arc<dyn EventSink>, sandbox_config: Option<PathBuf>) -> Arc<Self> {
        Self::with_stand_in(booter, events, StandInCommand::this_binary(), sandbox_config)
    }

    pub fn with_stand_in(
        booter: Box<dyn Booter>,
        events: Arc<dyn EventSink>,
        standin: StandInCommand,
        sandbox_config: Option<PathBuf>,
    ) -> Arc<Self> {
        Arc::new(Pod {
            booter,
            events,
            standin,
            sandbox_config,
            inner: Mutex::new(Inner::default()),
            exited: Condvar::new(),
            asked: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, TaskError> {
        self.inner.lock().map_err(|_| TaskError::FailedPrecondition("shim state lock poisoned".into()))
    }

    fn guest(inner: &Inner) -> Result<Arc<dyn Guest>, TaskError> {
        inner.guest.clone().ok_or_else(|| TaskError::FailedPrecondition("the pod's VM is not running".into()))
    }

    /// Whether any Create has reached this shim: one that never gets one (its `start`
    /// was killed, or containerd died before asking) has nothing to serve.
    pub fn was_asked(&self) -> bool {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn create(self: &Arc<Self>, r: CreateRequest) -> Result<u32, TaskError> {
        self.asked.store(true, std::sync::atomic::Ordering::SeqCst);
        isola_protocol::validate_id(&r.id).map_err(|e| TaskError::InvalidArgument(e.message))?;
        let config = PathBuf::from(&r.bundle).join("config.json");
        let mut spec = spec::load(&config)
            .map_err(|e| TaskError::InvalidArgument(format!("reading {}: {e}", config.display())))?;
        let (role, pod_id) = spec::role(&spec, &r.id);
        // The agent checks a container's spec; a pod sandbox's never reaches it.
        if let Some(why) = isola_protocol::spec_rules::hostname_without_uts(&spec) {
            return Err(TaskError::InvalidArgument(format!("task {}: {why}", r.id)));
        }
        let mut inner = self.lock()?;
        if inner.containers.contains_key(&r.id) {
            return Err(TaskError::AlreadyExists(format!("task {}", r.id)));
        }
        if inner.guest.is_none() {
            if role == Role::InPod {
                return Err(TaskError::FailedPrecondition(format!("pod {pod_id} has no running sandbox")));
            }
            let (memory_mib, vcpus) = spec::vm_size(&spec);
            let host = || nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
            let hostname = spec::vm_hostname(&spec, &pod_id, host);
            let mut req = BootRequest {
                name: spec::vm_name(&pod_id),
                hostname,
                netns: spec::netns(&spec),
                memory_mib,
                vcpus,
                config_path: r.config_path.clone(),
                cgroup_path: spec::cgroup_path(&spec)?,
                // A pod's sysctls are on its sandbox; a lone container's apply to it alone.
                sysctls: if role == Role::PodSandbox { spec::sysctls(&spec) } else { vec![] },
                ..BootRequest::default()
            };
            // A container's own rootfs as a disk goes to the VM at boot.
            let disk = if role == Role::PodSandbox { None } else { rootfs::as_disk(&r.id, &r.rootfs) };
            if let Some(d) = disk {
                req.no_share = !rootfs::has_binds(&spec);
                req.disks = vec![d];
            }
            self.boot_vm(&mut inner, &req, &r.bundle, &r.id)?;
        }
        let guest = Self::guest(&inner)?;
        let made = (|| {
            // The sandbox container is the VM itself: no process in the guest.
            let bridge =
                if role == Role::PodSandbox { None } else { Some(self.create_in_guest(&*guest, &r, &mut spec)?) };
            Ok::<_, TaskError>((bridge, StandIn::spawn(&self.standin, &[&r.id])?))
        })();
        let (bridge, standin) = match made {
            Ok(x) => x,
            Err(e) => {
                // A VM booted for this container alone must not outlive its failure.
                if inner.owner.as_deref() == Some(r.id.as_str()) {
                    Self::end_vm(&mut inner);
                }
                return Err(e);
            }
        };
        let pid = standin.pid();
        let host_cgroup = if role == Role::InPod { Self::member_cgroup(&r.id, &spec, pid) } else { None };
        let record = crate::bundle::BundleRecord {
            vm: inner.guest.as_ref().map(|g| g.state_dir()).unwrap_or_default(),
            owner: inner.owner.as_deref() == Some(r.id.as_str()),
            shared_dir: guest.shared_dir(),
            cgroup_dirs: host_cgroup.as_ref().map(|c| c.dirs()).unwrap_or_default(),
        };
        record.save(&r.bundle);
        inner.containers.insert(
            r.id.clone(),
            Container {
                bundle: r.bundle.clone(),
                role,
                init: Proc::new(r.stdio.clone(), standin, bridge),
                execs: HashMap::new(),
                host_cgroup,
            },
        );
        self.events.send(Event::Create {
            id: r.id,
            bundle: r.bundle,
            stdin: r.stdio.stdin,
            stdout: r.stdio.stdout,
            stderr: r.stdio.stderr,
            terminal: r.stdio.terminal,
            pid,
        });
        Ok(pid)
    }

    /// A pod member's host cgroup at its `cgroupsPath`, with its limits and its
    /// stand-in `pid` (what kubelet, cAdvisor and containerd read for the container).
    /// The container runs in the VM, so a failure here costs only that view: a warning.
    fn member_cgroup(id: &str, spec: &Spec, pid: u32) -> Option<isola_sandbox::limits_cgroup::LimitsCgroup> {
        use isola_sandbox::limits_cgroup::{Limits, LimitsCgroup};
        let rel = spec::cgroup_path(spec).ok().flatten()?;
        let root = Path::new("/sys/fs/cgroup");
        let limits = spec.linux().as_ref().and_then(|l| l.resources().as_ref()).map(Limits::from_oci);
        let made = LimitsCgroup::create(root, &rel).and_then(|cg| {
            let set = limits.as_ref().map_or(Ok(()), |l| cg.apply(l)).and_then(|()| cg.add(pid));
            match set {
                Ok(()) => Ok(cg),
                Err(e) => {
                    cg.remove();
                    Err(e)
                }
            }
        });
        made.inspect_err(|e| log::warn!("{id}: its host cgroup {}: {e}", rel.display())).ok()
    }

    /// Rootfs and binds into the share, the container in the guest, its stdio attached.
    fn create_in_guest(&self, guest: &dyn Guest, r: &CreateRequest, spec: &mut Spec) -> Result<Bridge, TaskError> {
        if let Some(disk) = rootfs::as_disk(&r.id, &r.rootfs) {
            return self.create_on_disk(guest, r, spec, &disk);
        }
        let shared = guest
            .shared_dir()
            .ok_or_else(|| TaskError::FailedPrecondition("the VM has no shared directory (virtiofsd)".into()))?;
        let root_path = {
            let p = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_else(|| "rootfs".into());
            if p.is_absolute() {
                p
            } else {
                PathBuf::from(&r.bundle).join(p)
            }
        };
        let result = (|| {
            rootfs::mount_rootfs(&shared, &r.id, &r.rootfs, &root_path)?;
            rootfs::share_bind_mounts(&shared, &r.id, spec)?;
            Self::create_attached(guest, r, spec, None)
        })();
        if result.is_err() {
            rootfs::release(&shared, &r.id);
        }
        result
    }

    /// The container in the guest with its stdio attached; one whose stdio cannot be
    /// attached is deleted again.
    fn create_attached(
        guest: &dyn Guest,
        r: &CreateRequest,
        spec: &Spec,
        disk: Option<&isola_sandbox::options::DiskAttach>,
    ) -> Result<Bridge, TaskError> {
        guest.create(&r.id, spec, disk)?;
        Bridge::start(guest, &r.id, None, &r.stdio).inspect_err(|_| {
            let _ = guest.delete(&r.id);
        })
    }

    /// A container whose rootfs is a disk the VM was booted with: nothing is mounted
    /// on the host; binds, if any, still go through the share.
    fn create_on_disk(
        &self,
        guest: &dyn Guest,
        r: &CreateRequest,
        spec: &mut Spec,
        disk: &isola_sandbox::options::DiskAttach,
    ) -> Result<Bridge, TaskError> {
        if !guest.has_disk(&disk.serial) {
            return Err(TaskError::FailedPrecondition(format!(
                "{}: its rootfs is a block file ({} snapshot), which a VM is given when it starts; \
                 it is not the first container of its pod (use an overlayfs snapshotter for pods)",
                r.id, disk.fstype
            )));
        }
        let shared = guest.shared_dir();
        if rootfs::has_binds(spec) {
            let shared = shared.as_deref().ok_or_else(|| {
                TaskError::FailedPrecondition("the VM has no shared directory for the spec's binds".into())
            })?;
            rootfs::share_bind_mounts(shared, &r.id, spec)?;
        }
        let result = Self::create_attached(guest, r, spec, Some(disk));
        if let (Err(_), Some(shared)) = (&result, &shared) {
            rootfs::release(shared, &r.id);
        }
        result
    }

    pub fn start(self: &Arc<Self>, id: &str, exec_id: &str) -> Result<u32, TaskError> {
        let exec = exec_key(exec_id);
        let mut inner = self.lock()?;
        let guest = inner.guest.clone();
        let (role, p) = Self::find(&mut inner, id, exec)?;
        if p.status != Status::Created {
            return Err(TaskError::FailedPrecondition(format!(
                "{} is {:?}, not created",
                exec.unwrap_or(id),
                p.status
            )));
        }
        if role == Role::PodSandbox {
            p.status = Status::Running;
            self.events.send(Event::Start { id: id.into(), pid: p.pid });
            return Ok(p.pid);
        }
        let guest = guest.ok_or_else(|| TaskError::FailedPrecondition("the pod's VM is not running".into()))?;
        p.guest_pid = guest.start(id, exec)?;
        let pid = p.pid;
        p.status = Status::Running;
        self.events.send(match exec {
            None => Event::Start { id: id.into(), pid },
            Some(x) => Event::ExecStarted { id: id.into(), exec_id: x.into(), pid },
        });
        // The exit is recorded under the lock we hold, so it can only follow the start event.
        let (pod, id, exec) = (Arc::clone(self), id.to_string(), exec.map(String::from));
        std::thread::spawn(move || pod.await_exit(&*guest, &id, exec.as_deref()));
        Ok(pid)
    }

    /// Runs on its own thread per process: the guest's wait, the output drained, the exit recorded.
    fn await_exit(&self, guest: &dyn Guest, id: &str, exec: Option<&str>) {
        let (code, oom) = match guest.wait(id, exec) {
            Ok(s) => (s.code as u32, s.oom_killed),
            Err(e) => {
                log::warn!("waiting for {}: {e}", exec.unwrap_or(id));
                (VM_GONE_EXIT, false)
            }
        };
        let bridge =
            self.lock().ok().and_then(|mut i| Self::find(&mut i, id, exec).ok().and_then(|(_, p)| p.bridge.take()));
        if let Some(b) = bridge {
            b.finish(DRAIN);
        }
        if let Ok(mut inner) = self.lock() {
            self.record_exit(&mut inner, id, exec, code, oom);
        }
    }

    /// A container's role and one of its processes (its init, or exec `exec`).
    fn find<'a>(inner: &'a mut Inner, id: &str, exec: Option<&str>) -> Result<(Role, &'a mut Proc), TaskError> {
        let c = inner.containers.get_mut(id).ok_or_else(|| not_found(id, None))?;
        let p = match exec {
            None => &mut c.init,
            Some(x) => c.execs.get_mut(x).ok_or_else(|| not_found(id, exec))?,
        };
        Ok((c.role, p))
    }

    /// The first exit recorded wins (the agent's, or the VM's death).
    fn record_exit(&self, inner: &mut Inner, id: &str, exec: Option<&str>, code: u32, oom: bool) {
        let Ok((_, p)) = Self::find(inner, id, exec) else { return };
        if p.exit.is_some() {
            return;
        }
        let at = SystemTime::now();
        p.exit = Some(Exit { code, at });
        p.status = Status::Stopped;
        // Its host pid ends with it.
        drop(p.standin.take());
        if oom {
            self.events.send(Event::Oom { id: id.into() });
        }
        self.events.send(Event::Exit { id: id.into(), exec_id: exec.map(Into::into), pid: p.pid, status: code, at });
        self.exited.notify_all();
    }

    /// Every process still running is reported exited (the VM is gone).
    fn exit_all(&self, inner: &mut Inner) {
        let ids: Vec<(String, Vec<String>)> =
            inner.containers.iter().map(|(id, c)| (id.clone(), c.execs.keys().cloned().collect())).collect();
        for (id, execs) in ids {
            for x in execs {
                self.record_exit(inner, &id, Some(&x), VM_GONE_EXIT, false);
            }
            self.record_exit(inner, &id, None, VM_GONE_EXIT, false);
        }
    }

    pub fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<(), TaskError> {
        let exec = exec_key(exec_id);
        let mut inner = self.lock()?;
        let guest = inner.guest.clone();
        let (role, p) = Self::find(&mut inner, id, exec)?;
        if p.status == Status::Stopped {
            return Err(TaskError::NotFound(format!("process {} already finished", exec.unwrap_or(id))));
        }
        let created = p.status == Status::Created;
        if role == Role::PodSandbox {
            // Killing the pause process: the sandbox task ends; the VM goes on Delete.
            self.record_exit(&mut inner, id, None, 128 + signal, false);
            return Ok(());
        }
        let guest = guest.ok_or_else(|| TaskError::FailedPrecondition("the pod's VM is not running".into()))?;
        let sig = i32::try_from(signal).map_err(|_| TaskError::InvalidArgument(format!("signal {signal}")))?;
        let all = all && exec.is_none();
        let r = guest.signal(id, exec, sig, all);
        if created {
            // Never started: nothing ran, so it ends here (as runc's created init does),
            // whatever the guest said; Wait returns and Delete reports 128 + signal.
            if let Err(e) = r {
                log::debug!("signal to created {}: {e}", exec.unwrap_or(id));
            }
            self.record_exit(&mut inner, id, exec, 128 + signal, false);
            return Ok(());
        }
        let Err(e) = r else { return Ok(()) };
        // A kill that raced an exit: the guest's wait reports that exit right after.
        // Then it is "already finished" (NotFound), as containerd expects.
        let until = std::time::Instant::now() + RACE_GRACE;
        loop {
            if Self::find(&mut inner, id, exec).map_or(true, |(_, p)| p.exit.is_some()) {
                return Err(TaskError::NotFound(format!("process {} already finished", exec.unwrap_or(id))));
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(e);
            }
            inner = self
                .exited
                .wait_timeout(inner, left)
                .map_err(|_| TaskError::FailedPrecondition("lock poisoned".into()))?
                .0;
        }
    }

    /// Blocks until the process has exited.
    pub fn wait(&self, id: &str, exec_id: &str) -> Result<Exit, TaskError> {
        let exec = exec_key(exec_id);
        let mut inner = self.lock()?;
        loop {
            let found = Self::find(&mut inner, id, exec).map(|(_, p)| p.exit.clone());
            let key = (id.to_string(), exec.map(String::from));
            match found {
                Ok(Some(e)) => return Ok(e),
                Ok(None) => {}
                // Deleted while we waited: its exit, if it was ours to wait for.
                Err(e) => {
                    return inner.gone.iter().find(|(k, _)| *k == key).map(|(_, x)| x.clone()).ok_or(e);
                }
            }
            inner = self.exited.wait(inner).map_err(|_| TaskError::FailedPrecondition("lock poisoned".into()))?;
        }
    }

    /// Removes a process or a container that is not running. Deleting the VM's owner ends the VM.
    pub fn delete(&self, id: &str, exec_id: &str) -> Result<(u32, Exit), TaskError> {
        let exec = exec_key(exec_id);
        let mut inner = self.lock()?;
        let c = inner.containers.get_mut(id).ok_or_else(|| not_found(id, None))?;
        if let Some(x) = exec {
            let p = c.execs.get(x).ok_or_else(|| not_found(id, exec))?;
            if matches!(p.status, Status::Running | Status::Paused) {
                return Err(TaskError::FailedPrecondition(format!("process {x} is running")));
            }
            if p.exit.is_none() {
                // Created, never started: it ends here, so a pending Wait returns. It
                // never ran, so it has no status but 0, as runc's shim reports it
                // (containerd's TestDeleteContainerExecCreated).
                self.record_exit(&mut inner, id, exec, 0, false);
            }
            let c = inner.containers.get_mut(id).ok_or_else(|| not_found(id, None))?;
            let p = c.execs.remove(x).ok_or_else(|| not_found(id, exec))?;
            let exit = p.exit.unwrap_or(Exit { code: 0, at: SystemTime::now() });
            inner.remember(id, exec, &exit);
            self.exited.notify_all();
            return Ok((p.pid, exit));
        }
        if matches!(c.init.status, Status::Running | Status::Paused) {
            return Err(TaskError::FailedPrecondition(format!("task {id} is running")));
        }
        // A created task that never ran ends as runc's does on delete (its init killed):
        // a pending Wait returns, and the exit precedes the delete event.
        let mut unexited: Vec<String> =
            c.execs.iter().filter(|(_, p)| p.exit.is_none()).map(|(x, _)| x.clone()).collect();
        if c.init.exit.is_none() {
            unexited.push(String::new());
        }
        for x in unexited {
            self.record_exit(&mut inner, id, exec_key(&x), 128 + 9, false);
        }
        let c = inner.containers.remove(id).ok_or_else(|| not_found(id, None))?;
        let exits = std::iter::once((None, &c.init)).chain(c.execs.iter().map(|(x, p)| (Some(x.as_str()), p)));
        for (x, p) in exits {
            if let Some(e) = &p.exit {
                inner.remember(id, x, e);
            }
        }
        // Waits on this task's processes end now (with the exits kept above).
        self.exited.notify_all();
        if let Some(guest) = inner.guest.clone() {
            if c.role != Role::PodSandbox {
                if let Err(e) = guest.delete(id) {
                    log::warn!("deleting {id} in the guest: {e}");
                }
            }
        }
        if let Some(shared) = &inner.shared {
            rootfs::release(shared, id);
        }
        if let Some(cg) = &c.host_cgroup {
            cg.remove();
        }
        if inner.owner.as_deref() == Some(id) {
            Self::end_vm(&mut inner);
            self.exit_all(&mut inner);
        }
        let exit = c.init.exit.clone().unwrap_or(Exit { code: 0, at: SystemTime::now() });
        self.events.send(Event::Delete { id: id.into(), pid: c.init.pid, status: exit.code, at: exit.at });
        Ok((c.init.pid, exit))
    }

    /// (bundle, pid, status, stdio, exit) of a process.
    pub fn state(&self, id: &str, exec_id: &str) -> Result<(String, u32, Status, StdioPaths, Option<Exit>), TaskError> {
        let exec = exec_key(exec_id);
        let mut inner = self.lock()?;
        let bundle = inner.containers.get(id).map(|c| c.bundle.clone()).ok_or_else(|| not_found(id, None))?;
        let (_, p) = Self::find(&mut inner, id, exec)?;
        Ok((bundle, p.pid, p.status, p.stdio.clone(), p.exit.clone()))
    }

    /// The task's own pid, its init's stand-in (what Create and State report), or 0 for
    /// a task this shim does not hold. Never the VMM's: the VM is the pod's, and a
    /// tool reading this pid's cgroup or memory must see the task's.
    pub fn task_pid(&self, id: &str) -> u32 {
        self.lock().ok().and_then(|i| i.containers.get(id).map(|c| c.init.pid)).unwrap_or(0)
    }

    /// Every process of the container: the ones containerd knows (init, execs) by
    /// their host pids, then the others by their guest pids (they have no host pid: a
    /// deliberate difference of a VM, said in the README).
    pub fn pids(&self, id: &str) -> Result<Vec<u32>, TaskError> {
        let (known, role) = {
            let inner = self.lock()?;
            let c = inner.containers.get(id).ok_or_else(|| not_found(id, None))?;
            let known: Vec<(u32, u32)> = std::iter::once(&c.init)
                .chain(c.execs.values())
                .filter(|p| matches!(p.status, Status::Running | Status::Paused))
                .map(|p| (p.guest_pid, p.pid))
                .collect();
            (known, c.role)
        };
        let mut out: Vec<u32> = known.iter().map(|(_, host)| *host).collect();
        if role == Role::PodSandbox || known.is_empty() {
            return Ok(out);
        }
        let (guest, _) = self.in_guest(id)?;
        let in_guest = guest.stats(id)?.pids;
        out.extend(
            in_guest.into_iter().filter_map(|p| u32::try_from(p).ok()).filter(|p| !known.iter().any(|(g, _)| g == p)),
        );
        Ok(out)
    }

    /// No task left, and no sandbox-API VM still up: the shim may exit.
    pub fn is_empty(&self) -> bool {
        self.lock()
            .map(|i| i.containers.is_empty() && i.sandbox.as_ref().is_none_or(|s| s.exit.is_some()))
            .unwrap_or(true)
    }
}
