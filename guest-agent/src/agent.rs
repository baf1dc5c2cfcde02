//! The agent's state and request handling: containers, their processes, and the
//! host's requests against them.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isola_protocol::{
    validate_id, AgentError, ContainerInfo, ContainerStatus, ErrorCode, ExitStatus, Request, Response, RootfsSource,
    SandboxConfig, StdioStream, PROTOCOL_VERSION,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::cgroup::Cgroup;
use crate::config;
use crate::process::{self, err, lock, os_err, Proc};
use crate::reaper::{Exit, Reaper};
use crate::rootfs::{self, Layout};
use crate::syscall::{Linux, Syscall};

/// The syscalls the agent makes itself (mounts, hostname); tests record them instead.
pub type Sys = Arc<dyn Syscall + Send + Sync>;

/// Where the agent keeps its state, and how it finds itself to run the helper.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    pub cgroup_root: PathBuf,
    pub helper_exe: PathBuf,
    /// PID 1 in a guest: Shutdown powers the VM off. On a host (tests): the agent exits.
    pub is_init: bool,
}

pub struct Container {
    pub id: String,
    dir: PathBuf,
    layout: Layout,
    cgroup: Cgroup,
    seccomp: Option<crate::seccomp::Profile>,
    user_ns: Option<config::UserNs>,
    pub init: Arc<Proc>,
    execs: Mutex<HashMap<String, Arc<Proc>>>,
}

pub struct Agent {
    cfg: AgentConfig,
    sys: Sys,
    reaper: Arc<Reaper>,
    sandbox: Mutex<SandboxConfig>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
}

/// How long a container's disk may take to show its capacity (a restored guest hears
/// of it from a config interrupt).
const DISK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Agent {
    pub fn new(cfg: AgentConfig, reaper: Arc<Reaper>) -> Self {
        Self::with_syscalls(cfg, reaper, Arc::new(Linux))
    }

    pub fn with_syscalls(cfg: AgentConfig, reaper: Arc<Reaper>, sys: Sys) -> Self {
        let (sandbox, containers) = (Mutex::new(SandboxConfig::default()), Mutex::new(HashMap::new()));
        Self { cfg, sys, reaper, sandbox, containers }
    }

    fn container(&self, id: &str) -> Result<Arc<Container>, AgentError> {
        validate_id(id)?;
        lock(&self.containers).get(id).cloned().ok_or_else(|| err(ErrorCode::NotFound, format!("no container {id}")))
    }

    fn proc(&self, id: &str, exec_id: Option<&str>) -> Result<(Arc<Container>, Arc<Proc>), AgentError> {
        let c = self.container(id)?;
        let p = match exec_id {
            None => c.init.clone(),
            Some(e) => {
                validate_id(e)?;
                lock(&c.execs)
                    .get(e)
                    .cloned()
                    .ok_or_else(|| err(ErrorCode::NotFound, format!("no process {e} in {id}")))?
            }
        };
        Ok((c, p))
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.cfg.state_dir.join("containers").join(id)
    }

    /// Unpacks an uploaded rootfs for container `id` (before CreateContainer).
    pub fn receive_rootfs(&self, id: &str, stream: impl std::io::Read) -> Result<(), AgentError> {
        validate_id(id)?;
        if lock(&self.containers).contains_key(id) {
            return Err(err(ErrorCode::AlreadyExists, format!("container {id} exists")));
        }
        let image = Layout::new(&self.container_dir(id)).image;
        let _ = std::fs::remove_dir_all(&image);
        rootfs::unpack(stream, &image).map(drop).map_err(|e| {
            let _ = std::fs::remove_dir_all(&image);
            err(ErrorCode::InvalidArgument, e.to_string())
        })
    }

    /// Handles one request of a control connection.
    pub fn handle(&self, req: Request) -> Response {
        let result = match req {
            Request::Ping => Ok(Response::Pong { protocol: PROTOCOL_VERSION, agent: env!("CARGO_PKG_VERSION").into() }),
            Request::CreateSandbox { config } => self.create_sandbox(config),
            Request::CreateContainer { id, spec, rootfs } => self.create(&id, &spec, rootfs),
            Request::Exec { id, exec_id, process } => self.exec(&id, &exec_id, &process),
            Request::Start { id, exec_id } => self.start(&id, exec_id.as_deref()),
            Request::Signal { id, exec_id, signal, all } => self.signal(&id, exec_id.as_deref(), signal, all),
            Request::Wait { id, exec_id } => {
                self.wait(&id, exec_id.as_deref()).map(|status| Response::Exited { status })
            }
            Request::CloseStdin { id, exec_id } => self.proc(&id, exec_id.as_deref()).map(|(_, p)| {
                lock(&p.stdio).stdin.take();
                Response::Ok
            }),
            Request::ResizeTty { id, exec_id, rows, cols } => self.resize(&id, exec_id.as_deref(), rows, cols),
            Request::Logs { id, exec_id, max_bytes } => self.logs(&id, exec_id.as_deref(), max_bytes),
            Request::Stats { id } => self.container(&id).map(|c| Response::Stats { stats: c.cgroup.stats() }),
            Request::Update { id, resources } => self
                .container(&id)
                .and_then(|c| c.cgroup.update(&resources).map_err(|e| os_err("cgroup", e)))
                .map(|()| Response::Ok),
            Request::Pause { id } => self.freeze(&id, true),
            Request::Resume { id } => self.freeze(&id, false),
            Request::Delete { id, force } => self.delete(&id, force),
            Request::List => Ok(Response::List { containers: self.list() }),
            Request::Restored { entropy, unix_time_ns } => self.restored(&entropy, unix_time_ns),
            Request::Shutdown => Ok(Response::Ok),
            Request::AttachStdio { .. } | Request::UploadRootfs { .. } => {
                Err(err(ErrorCode::BadRequest, "stream requests must be the first on a new connection"))
            }
        };
        result.unwrap_or_else(Response::Error)
    }

    fn create_sandbox(&self, config: SandboxConfig) -> Result<Response, AgentError> {
        if !config.hostname.is_empty() {
            let _ = self.sys.sethostname(&config.hostname);
        }
        if let Some(tag) = &config.shared_fs_tag {
            mount_shared_fs(&*self.sys, tag, Path::new(isola_protocol::SHARED_DIR))?;
        }
        // The pod's: in the guest's own namespaces, which its containers share (IPC,
        // network). Checked like a container's; no UTS ones (the hostname is above).
        let sysctls = crate::config::sysctl_writes(config.sysctls.iter().cloned(), false)
            .map_err(|e| err(ErrorCode::InvalidArgument, e.to_string()))?;
        if self.cfg.is_init {
            for (path, value) in &sysctls {
                self.sys.write_file(Path::new(path), value.as_bytes()).map_err(|e| os_err("sysctl", e))?;
            }
            // Only as the guest's PID 1: on a host (tests) this would be the host's network.
            crate::net::loopback_up().map_err(|e| err(ErrorCode::Os, e.to_string()))?;
            if let Some(n) = &config.network {
                crate::net::configure(n).map_err(|e| err(ErrorCode::Os, e.to_string()))?;
            }
        }
        *lock(&self.sandbox) = config;
        Ok(Response::Ok)
    }

    /// A restored VM: the host's entropy into the RNG (a clone must not repeat its
    /// template's random numbers) and the host's time, before any container runs.
    fn restored(&self, entropy: &[u8], unix_time_ns: u64) -> Result<Response, AgentError> {
        if entropy.len() != isola_protocol::RESTORE_ENTROPY_BYTES {
            return Err(err(
                ErrorCode::InvalidArgument,
                format!(
                    "restore entropy must be {} bytes, got {}",
                    isola_protocol::RESTORE_ENTROPY_BYTES,
                    entropy.len()
                ),
            ));
        }
        if !lock(&self.containers).is_empty() {
            return Err(err(ErrorCode::InvalidArgument, "restored after containers were created".to_string()));
        }
        self.sys.add_entropy(entropy).map_err(|e| os_err("reseeding the RNG", e))?;
        self.sys.set_clock(unix_time_ns).map_err(|e| os_err("setting the clock", e))?;
        Ok(Response::Ok)
    }

    fn etc_files(&self, spec: &Spec) -> Vec<(String, String)> {
        let sb = lock(&self.sandbox);
        let host = spec.hostname().clone().filter(|h| !h.is_empty()).unwrap_or_else(|| sb.hostname.clone());
        let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        if !host.is_empty() {
            hosts.push_str(&format!("127.0.1.1\t{host}\n"));
        }
        for h in &sb.hosts {
            hosts.push_str(h);
            hosts.push('\n');
        }
        let resolv: String = sb.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
        let mut files = vec![("/etc/hosts".to_string(), hosts)];
        if !resolv.is_empty() {
            files.push(("/etc/resolv.conf".into(), resolv));
        }
        if !host.is_empty() {
            files.push(("/etc/hostname".into(), format!("{host}\n")));
        }
        files
    }

    fn create(&self, id: &str, spec: &Spec, source: RootfsSource) -> Result<Response, AgentError> {
        validate_id(id)?;
        if lock(&self.containers).contains_key(id) {
            return Err(err(ErrorCode::AlreadyExists, format!("container {id} exists")));
        }
        let dir = self.container_dir(id);
        let layout = Layout::new(&dir);
        let in_place = matches!(
            source,
            RootfsSource::GuestPath { in_place: true, .. } | RootfsSource::Disk { in_place: true, .. }
        );
        let mounted = match source {
            RootfsSource::Upload => {
                if !layout.image.is_dir() {
                    return Err(err(ErrorCode::FailedPrecondition, format!("no rootfs was uploaded for {id}")));
                }
                rootfs::mount_overlay(&*self.sys, &layout.image, &layout)
            }
            RootfsSource::GuestPath { path, in_place } => {
                let p = PathBuf::from(&path);
                if !p.is_absolute() || !p.is_dir() {
                    return Err(err(
                        ErrorCode::InvalidArgument,
                        format!("rootfs {path} is not a directory in the guest"),
                    ));
                }
                if in_place {
                    rootfs::bind_in_place(&*self.sys, &p, &layout)
                } else {
                    rootfs::mount_overlay(&*self.sys, &p, &layout)
                }
            }
            RootfsSource::Disk { serial, fstype, in_place } => {
                if !isola_protocol::DISK_FILESYSTEMS.contains(&fstype.as_str()) {
                    return Err(err(ErrorCode::InvalidArgument, format!("rootfs disk filesystem {fstype:?}")));
                }
                let found = rootfs::wait_for_disk(Path::new("/sys/block"), &serial, DISK_WAIT);
                let Some(device) = found else {
                    return Err(err(ErrorCode::NotFound, format!("no disk with serial {serial:?} in the guest")));
                };
                if in_place {
                    rootfs::mount_disk_in_place(&*self.sys, &device, &fstype, &layout)
                } else {
                    rootfs::mount_disk(&*self.sys, &device, &fstype, &layout)
                }
            }
        };
        mounted.map_err(|e| os_err("rootfs", e))?;
        let cleanup = |cg: Option<&Cgroup>| {
            let _ = rootfs::remove_container_dir(&*self.sys, &dir, &layout);
            if let Some(cg) = cg {
                cg.destroy();
            }
        };
        let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        let cgroup = match Cgroup::create(&self.cfg.cgroup_root, id, resources) {
            Ok(c) => c,
            Err(e) => {
                cleanup(None);
                return Err(os_err("cgroup", e));
            }
        };
        let mut init_cfg =
            match config::for_create(spec, &layout.rootfs, Some(cgroup.path.clone()), self.etc_files(spec)) {
                Ok(c) => c,
                Err(e) => {
                    cleanup(Some(&cgroup));
                    return Err(err(ErrorCode::InvalidArgument, e.to_string()));
                }
            };
        if in_place {
            if let Err(e) = config::files_as_binds(&mut init_cfg, &dir.join("files")) {
                cleanup(Some(&cgroup));
                return Err(os_err("writing the /etc files", e));
            }
        }
        if let Err(e) = crate::setup::prepare_for_user_ns(&*self.sys, &mut init_cfg) {
            cleanup(Some(&cgroup));
            return Err(err(ErrorCode::Os, e.to_string()));
        }
        let init = match process::spawn(&self.cfg.helper_exe, &self.reaper, &init_cfg, &dir, "init") {
            Ok(p) => p,
            Err(e) => {
                cleanup(Some(&cgroup));
                return Err(e);
            }
        };
        let pid = init.pid;
        let c = Container {
            id: id.into(),
            dir,
            layout,
            cgroup,
            seccomp: init_cfg.seccomp.clone(),
            user_ns: init_cfg.user_ns.clone(),
            init: Arc::new(init),
            execs: Mutex::new(HashMap::new()),
        };
        lock(&self.containers).insert(id.into(), Arc::new(c));
        Ok(Response::Started { pid })
    }

    fn exec(&self, id: &str, exec_id: &str, process: &oci_spec::runtime::Process) -> Result<Response, AgentError> {
        validate_id(exec_id)?;
        let c = self.container(id)?;
        if !c.init.started.load(Ordering::Acquire) || self.reaper.try_get(c.init.pid).is_some() {
            return Err(err(ErrorCode::FailedPrecondition, format!("container {id} is not running")));
        }
        if lock(&c.execs).contains_key(exec_id) {
            return Err(err(ErrorCode::AlreadyExists, format!("process {exec_id} exists in {id}")));
        }
        let cfg =
            config::for_exec(process, c.init.pid, Some(c.cgroup.path.clone()), c.seccomp.clone(), c.user_ns.clone())
                .map_err(|e| err(ErrorCode::InvalidArgument, e.to_string()))?;
        let p = process::spawn(&self.cfg.helper_exe, &self.reaper, &cfg, &c.dir, &format!("exec-{exec_id}"))?;
        let pid = p.pid;
        lock(&c.execs).insert(exec_id.into(), Arc::new(p));
        Ok(Response::Started { pid })
    }

    fn start(&self, id: &str, exec_id: Option<&str>) -> Result<Response, AgentError> {
        let (c, p) = self.proc(id, exec_id)?;
        p.start(&log_path(&c.dir, exec_id))?;
        Ok(Response::Started { pid: p.pid })
    }

    fn logs(&self, id: &str, exec_id: Option<&str>, max_bytes: u32) -> Result<Response, AgentError> {
        let (c, _) = self.proc(id, exec_id)?;
        let mut data =
            crate::log::tail(&log_path(&c.dir, exec_id), u64::from(max_bytes)).map_err(|e| os_err("log", e))?;
        loop {
            let text = String::from_utf8_lossy(&data).into_owned();
            // Escaped control bytes grow in JSON: keep the newest part that fits a frame.
            let encoded = serde_json::to_vec(&text).map(|v| v.len()).unwrap_or(usize::MAX);
            if encoded + 1024 <= isola_protocol::MAX_FRAME || data.is_empty() {
                return Ok(Response::Logs { data: text });
            }
            data.drain(..data.len().div_ceil(2));
        }
    }

    fn signal(&self, id: &str, exec_id: Option<&str>, sig: i32, all: bool) -> Result<Response, AgentError> {
        let (c, p) = self.proc(id, exec_id)?;
        let s = Signal::try_from(sig).map_err(|_| err(ErrorCode::InvalidArgument, format!("bad signal {sig}")))?;
        if all {
            // Whatever runs in the container's cgroup, forks of execs included.
            for pid in c.cgroup.pids() {
                let _ = kill(Pid::from_raw(pid), s);
            }
            return Ok(Response::Ok);
        }
        if self.reaper.try_get(p.pid).is_some() {
            return Err(err(ErrorCode::FailedPrecondition, "process has exited"));
        }
        let started = *lock(&p.started_at);
        match (exec_id, started) {
            // The container's init, PID 1 of its namespace: see early_signal.
            (None, Some(at)) => p.pending.signal(p.pid, s, at, &self.reaper),
            _ => kill(Pid::from_raw(p.pid), s),
        }
        .map_err(|e| os_err("kill", e))?;
        Ok(Response::Ok)
    }

    fn wait(&self, id: &str, exec_id: Option<&str>) -> Result<ExitStatus, AgentError> {
        let (c, p) = self.proc(id, exec_id)?;
        let exit = self.reaper.wait(p.pid, None).ok_or_else(|| err(ErrorCode::Internal, "wait ended"))?;
        Ok(exit_status(exit, c.cgroup.oom_kills() > 0))
    }

    fn resize(&self, id: &str, exec_id: Option<&str>, rows: u16, cols: u16) -> Result<Response, AgentError> {
        let (_, p) = self.proc(id, exec_id)?;
        let m = p.pty_control.as_ref().ok_or_else(|| err(ErrorCode::FailedPrecondition, "process has no terminal"))?;
        crate::stdio::resize(m, rows, cols).map_err(|e| os_err("resize", e))?;
        Ok(Response::Ok)
    }

    fn freeze(&self, id: &str, frozen: bool) -> Result<Response, AgentError> {
        let c = self.container(id)?;
        c.cgroup.freeze(frozen).map_err(|e| os_err("freeze", e))?;
        Ok(Response::Ok)
    }

    fn status_of(&self, c: &Container) -> (ContainerStatus, Option<ExitStatus>) {
        if let Some(e) = self.reaper.try_get(c.init.pid) {
            return (ContainerStatus::Stopped, Some(exit_status(e, c.cgroup.oom_kills() > 0)));
        }
        if !c.init.started.load(Ordering::Acquire) {
            return (ContainerStatus::Created, None);
        }
        let frozen = std::fs::read_to_string(c.cgroup.path.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1");
        (if frozen { ContainerStatus::Paused } else { ContainerStatus::Running }, None)
    }

    fn list(&self) -> Vec<ContainerInfo> {
        let all: Vec<Arc<Container>> = lock(&self.containers).values().cloned().collect();
        let mut v: Vec<ContainerInfo> = all
            .iter()
            .map(|c| {
                let (status, exit) = self.status_of(c);
                ContainerInfo { id: c.id.clone(), status, pid: (exit.is_none()).then_some(c.init.pid), exit }
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn delete(&self, id: &str, force: bool) -> Result<Response, AgentError> {
        let c = self.container(id)?;
        let running = self.reaper.try_get(c.init.pid).is_none() && c.init.started.load(Ordering::Acquire);
        if running && !force {
            return Err(err(ErrorCode::FailedPrecondition, format!("container {id} is running (use force)")));
        }
        // Not started: closing the start pipe makes the waiting process exit.
        lock(&c.init.start).take();
        for p in lock(&c.execs).values() {
            lock(&p.start).take();
        }
        let _ = c.cgroup.freeze(false);
        let _ = kill(Pid::from_raw(c.init.pid), Signal::SIGKILL);
        self.reaper.wait(c.init.pid, Some(Duration::from_secs(5)));
        c.cgroup.destroy();
        if let Err(e) = rootfs::remove_container_dir(&*self.sys, &c.dir, &c.layout) {
            eprintln!("isola-agent: container {id}: its directory stays ({e}): the rootfs is still mounted there");
        }
        self.reaper.forget(c.init.pid);
        for p in lock(&c.execs).values() {
            self.reaper.forget(p.pid);
        }
        lock(&self.containers).remove(id);
        Ok(Response::Ok)
    }

    /// Hands one stdio stream of a process to `conn` (see [`Proc::attach`]).
    pub fn attach(&self, id: &str, exec_id: Option<&str>, stream: StdioStream, conn: File) -> Result<(), AgentError> {
        self.proc(id, exec_id)?.1.attach(stream, conn)
    }

    pub fn is_init(&self) -> bool {
        self.cfg.is_init
    }
}

fn log_path(dir: &Path, exec_id: Option<&str>) -> PathBuf {
    dir.join(format!("{}.log", exec_id.map_or("init".to_string(), |e| format!("exec-{e}"))))
}

/// Mounts the sandbox's virtio-fs share (once; a second CreateSandbox finds it there).
fn mount_shared_fs(sys: &dyn Syscall, tag: &str, at: &Path) -> Result<(), AgentError> {
    if tag.is_empty() || tag.len() > 36 || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(err(ErrorCode::InvalidArgument, format!("bad virtio-fs tag {tag:?}")));
    }
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(&at.to_string_lossy()));
    if mounted {
        return Ok(());
    }
    sys.mkdir_all(at).map_err(|e| os_err("shared dir", e))?;
    let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV;
    sys.mount(tag, at, "virtiofs", flags, None)
        .map_err(|e| err(ErrorCode::Os, format!("mounting virtio-fs {tag} at {}: {e}", at.display())))
}

/// Shell convention: 128 + signal for a signal death.
pub fn exit_status(e: Exit, oom: bool) -> ExitStatus {
    match e {
        Exit::Code(code) => ExitStatus { code, signal: None, oom_killed: false },
        Exit::Signal(s) => ExitStatus { code: 128 + s, signal: Some(s), oom_killed: oom && s == libc::SIGKILL },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_128_plus_and_oom_needs_sigkill() {
        assert_eq!(exit_status(Exit::Code(3), true), ExitStatus { code: 3, signal: None, oom_killed: false });
        assert_eq!(exit_status(Exit::Signal(15), true), ExitStatus { code: 143, signal: Some(15), oom_killed: false });
        assert_eq!(exit_status(Exit::Signal(9), true), ExitStatus { code: 137, signal: Some(9), oom_killed: true });
        assert!(!exit_status(Exit::Signal(9), false).oom_killed);
    }

    #[test]
    fn unknown_ids_are_refused_without_touching_state() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = Agent::new(
            AgentConfig {
                state_dir: dir.path().into(),
                cgroup_root: dir.path().join("cg"),
                helper_exe: "/bin/false".into(),
                is_init: false,
            },
            Arc::new(Reaper::default()),
        );
        for req in [
            Request::Start { id: "nope".into(), exec_id: None },
            Request::Wait { id: "../../x".into(), exec_id: None },
            Request::Signal { id: "c".into(), exec_id: Some("a/b".into()), signal: 9, all: false },
            Request::Delete { id: "".into(), force: true },
        ] {
            let Response::Error(e) = a.handle(req.clone()) else { panic!("{req:?} should fail") };
            assert!(matches!(e.code, ErrorCode::NotFound | ErrorCode::InvalidArgument), "{req:?}: {e}");
        }
        let Response::Error(e) =
            a.handle(Request::AttachStdio { id: "c".into(), exec_id: None, stream: StdioStream::Stdout })
        else {
            panic!("attach on control")
        };
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(matches!(a.handle(Request::List), Response::List { containers } if containers.is_empty()));
    }

    #[test]
    fn create_sandbox_makes_its_syscalls_through_the_seam() {
        let dir = tempfile::tempdir().expect("tmp");
        let (a, sys) = recording_agent(dir.path());
        let config = SandboxConfig {
            hostname: "pod-a".into(),
            shared_fs_tag: Some("isola-shared".into()),
            ..Default::default()
        };
        assert_eq!(a.handle(Request::CreateSandbox { config }), Response::Ok);
        let calls = sys.calls();
        assert!(calls.iter().any(|c| c == "sethostname pod-a"), "{calls:?}");
        assert!(calls.iter().any(|c| c.starts_with("mount isola-shared /run/isola/shared virtiofs")), "{calls:?}");
        let bad = SandboxConfig { shared_fs_tag: Some("../etc".into()), ..Default::default() };
        let Response::Error(e) = a.handle(Request::CreateSandbox { config: bad }) else { panic!("bad tag accepted") };
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        // A pod sysctl of the whole guest kernel is refused by name.
        let bad = SandboxConfig { sysctls: vec![("vm.swappiness".into(), "1".into())], ..Default::default() };
        let Response::Error(e) = a.handle(Request::CreateSandbox { config: bad }) else { panic!("sysctl accepted") };
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("vm.swappiness"), "{}", e.message);
    }

    /// An agent (not PID 1) whose syscalls are recorded, its state under `dir`.
    fn recording_agent(dir: &Path) -> (Agent, Arc<crate::recording::Recording>) {
        let sys = Arc::new(crate::recording::Recording::default());
        let cfg = AgentConfig {
            state_dir: dir.into(),
            cgroup_root: dir.join("cg"),
            helper_exe: "/bin/false".into(),
            is_init: false,
        };
        (Agent::with_syscalls(cfg, Arc::new(Reaper::default()), sys.clone()), sys)
    }

    #[test]
    fn a_restored_vm_reseeds_its_rng_and_sets_its_clock_through_the_seam() {
        let dir = tempfile::tempdir().expect("tmp");
        let (a, sys) = recording_agent(dir.path());
        let entropy: Vec<u8> = (0..isola_protocol::RESTORE_ENTROPY_BYTES as u8).collect();
        let req = Request::Restored { entropy: entropy.clone(), unix_time_ns: 1_796_550_000_123_456_789 };
        assert_eq!(a.handle(req), Response::Ok);
        let hex: String = entropy.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sys.calls(), vec![format!("add_entropy {hex}"), "set_clock 1796550000123456789".to_string()]);
        // Too little (or too much) entropy is refused before anything is touched.
        for n in [0, 8, 4096] {
            let Response::Error(e) = a.handle(Request::Restored { entropy: vec![7; n], unix_time_ns: 1 }) else {
                panic!("{n} bytes of entropy accepted")
            };
            assert_eq!(e.code, ErrorCode::InvalidArgument);
            assert!(e.message.contains("64 bytes"), "{}", e.message);
        }
        assert_eq!(sys.calls().len(), 2);
    }
}
