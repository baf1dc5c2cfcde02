//! The keeper: the host process `create` leaves behind for a container, and the pid
//! the caller waits on (containerd's runc shim and conmon reap it as its subreaper).
//! It owns the microVM (through the shim's task logic, [`isola_task::pod`]),
//! holds the stdio it was given and relays it to the guest, serves the CLI's requests
//! on its control socket, forwards the signals it gets, and at the end exits with the
//! container's status: its code, or the same signal.

use std::io::{BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use isola_task::event::{Event, EventSink};
use isola_task::guest::VmBooter;
use isola_task::pod::{CreateRequest, Pod, Status};
use isola_task::standin::StandInCommand;
use isola_task::stdio::StdioPaths;
use nix::sys::signal::{SigSet, Signal};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::control::{read_line, send_line, Reply, Request};
use crate::error::{io, RuntimeError};
use crate::keeper_state::Keeper;
use crate::state::{self, Dir, Record};

/// The fd on which the keeper (and an exec relay) reports to the command that started it.
pub const READY_FD: RawFd = 3;

/// The signals a keeper or relay passes on to its process (the rest keep their default).
pub fn forwarded() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGCONT,
        Signal::SIGWINCH,
    ] {
        s.add(sig);
    }
    s
}

struct NoEvents;
impl EventSink for NoEvents {
    fn send(&self, _: Event) {}
}

/// What `create` passes to the keeper.
pub struct KeeperArgs {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
}

/// Tells the starting command how it went (one line, then EOF).
pub struct Ready(Option<std::fs::File>);

impl Ready {
    pub fn from_fd() -> Self {
        // SAFETY: fd 3 was set up by our parent for this report; nothing else uses it.
        // Close-on-exec at once, so the VMM and helpers we start never hold it open.
        let valid = unsafe { libc::fcntl(READY_FD, libc::F_SETFD, libc::FD_CLOEXEC) } >= 0;
        // SAFETY: as above; from here on the File owns it.
        Ready(valid.then(|| unsafe { std::fs::File::from_raw_fd(READY_FD) }))
    }
    /// Nobody to tell (a foreground exec).
    pub fn none() -> Self {
        Ready(None)
    }
    pub fn send(&mut self, msg: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = writeln!(f, "{msg}");
        }
    }
}

/// Points fds 0-2 at /dev/null: with a console the pty is the stdio, and what we were
/// given (go-runc's pipe that collects `create`'s output) must not be held open, or
/// the caller waits for its EOF forever.
pub fn null_stdio() -> Result<(), RuntimeError> {
    let null =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map_err(io("opening", "/dev/null"))?;
    for fd in 0..3 {
        // SAFETY: dup2 onto a stdio fd we own; `null` stays valid for the call.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    Ok(())
}

/// Copies fd `fd` above the stdio range (close-on-exec); the copy's `/proc/self/fd`
/// path is what the relay opens. The caller then points the stdio fds at /dev/null
/// ([`null_stdio`]), so nothing the keeper prints lands in the container's output.
fn copy_up(fd: RawFd) -> Result<(OwnedFd, String), RuntimeError> {
    // SAFETY: F_DUPFD_CLOEXEC on one of our stdio fds makes a new fd we then own.
    let hi = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if hi < 0 {
        return Err(io("duplicating stdio fd", format!("/proc/self/fd/{fd}"))(std::io::Error::last_os_error()));
    }
    // SAFETY: `hi` is a fresh fd of ours.
    let owned = unsafe { OwnedFd::from_raw_fd(hi) };
    Ok((owned, format!("/proc/self/fd/{hi}")))
}

/// The private copy of the bundle the VM is made from: the caller's spec with an
/// absolute root, no hooks (the keeper runs them), and the network namespace the VM
/// takes its interface from (none: the guest has loopback only, as runc's container
/// in an empty namespace has).
fn bundle_copy(dir: &Dir, bundle: &Path, spec: &Spec, netns: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let mut spec = spec.clone();
    if let Some(root) = spec.root().clone() {
        let mut root = root;
        if root.path().is_relative() {
            root.set_path(bundle.join(root.path()));
        }
        spec.set_root(Some(root));
    }
    spec.set_hooks(None);
    if let Some(linux) = spec.linux().clone() {
        let mut linux = linux;
        let nss = linux.namespaces().clone().unwrap_or_default();
        let nss = nss
            .into_iter()
            .map(|mut n| {
                if n.typ() == LinuxNamespaceType::Network {
                    n.set_path(netns.map(Path::to_path_buf));
                }
                n
            })
            .collect();
        linux.set_namespaces(Some(nss));
        spec.set_linux(Some(linux));
    }
    let out = dir.bundle_copy();
    std::fs::create_dir_all(&out).map_err(io("creating", &out))?;
    let bytes = serde_json::to_vec(&spec)
        .map_err(|e| RuntimeError::Spec { path: out.join("config.json"), why: e.to_string() })?;
    isola_sandbox::files::write_atomic(&out.join("config.json"), &bytes)
        .map_err(io("writing", &out.join("config.json")))?;
    Ok(out)
}

/// Whether the spec asks for a new network namespace (no path): Docker's bridge then
/// sets it up from its prestart hook, in the keeper's own namespace.
pub fn wants_new_netns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|nss| nss.iter().any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none()))
}

/// Whether the namespace has an interface the VM can take (Docker's or CNI's veth);
/// an empty one (`--network none`, no hooks) leaves the guest with loopback only.
/// One another VM holds already (a pod's second container) is an error.
fn has_interface(ns: &Path) -> Result<bool, RuntimeError> {
    match isola_sandbox::netns::inspect(ns) {
        Ok(_) => Ok(true),
        Err(e @ isola_sandbox::netns::PodNetError::Taken(_)) => Err(RuntimeError::Invalid(e.to_string())),
        Err(e) => {
            log::debug!("{}: {e}; no network", ns.display());
            Ok(false)
        }
    }
}

/// The hook state: the keeper's pid stands for the container's.
pub fn hook_state(r: &Record, status: &str) -> serde_json::Value {
    let mut v = r.oci_state();
    v["status"] = status.into();
    v["pid"] = r.pid.into();
    v
}

/// The VM's memory cgroup (from the sandbox's state): the keeper joins it, so the
/// caller's stats and OOM watch (they read the pid's cgroup) see the VM.
fn vm_cgroup(vm_dir: &Path) -> Option<PathBuf> {
    isola_sandbox::state::SandboxState::load(vm_dir).ok()?.cgroup
}

fn join_cgroup(dir: &Path) {
    if let Err(e) = std::fs::write(dir.join("cgroup.procs"), "0") {
        log::warn!("joining {}: {e}", dir.display());
    }
}

/// A container's keeper, as `create` starts it ([`isola_sandbox::background`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct KeeperJob {
    pub globals: crate::globals::Globals,
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
}

impl isola_sandbox::background::Job for KeeperJob {
    const NAME: &'static str = "keeper";
}

/// The keeper's life; returns the exit status to end with.
pub fn run(j: KeeperJob) -> i32 {
    let args = KeeperArgs { root: j.globals.root, id: j.id, bundle: j.bundle, console_socket: j.console_socket };
    let mut ready = Ready::from_fd();
    match setup(&args) {
        Ok(k) => {
            ready.send(&format!("ok {}", std::process::id()));
            drop(ready);
            life(k)
        }
        Err(e) => {
            ready.send(&format!("error {e}"));
            1
        }
    }
}

fn setup(a: &KeeperArgs) -> Result<Arc<Keeper>, RuntimeError> {
    let dir = Dir::new(&a.root, &a.id)?;
    let config = a.bundle.join("config.json");
    let spec = isola_task::spec::load(&config).map_err(|why| RuntimeError::Spec { path: config.clone(), why })?;
    // Unshared before any thread exists (unshare(CLONE_NEWNET) is per thread).
    let netns = if wants_new_netns(&spec) {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| RuntimeError::Invalid(format!("making the container's network namespace: {e}")))?;
        Some(PathBuf::from(format!("/proc/{}/ns/net", std::process::id())))
    } else {
        None
    };
    // The signals to forward stay pending until the forwarding thread takes them.
    let _ = forwarded().thread_block();
    let terminal = spec.process().as_ref().is_some_and(|p| p.terminal().unwrap_or(false));
    let mut held: Vec<OwnedFd> = Vec::new();
    let mut tty = None;
    let stdio = match &a.console_socket {
        Some(sock) => {
            let c = crate::console::hand_over(sock)?;
            null_stdio()?;
            let path = format!("/proc/self/fd/{}", c.slave.as_raw_fd());
            tty = c.slave.try_clone().ok();
            held.push(c.slave);
            StdioPaths { stdin: path.clone(), stdout: path, stderr: String::new(), terminal: true }
        }
        None => {
            let mut paths = Vec::new();
            for fd in 0..3 {
                let (owned, path) = copy_up(fd)?;
                held.push(owned);
                paths.push(path);
            }
            null_stdio()?;
            StdioPaths { stdin: paths[0].clone(), stdout: paths[1].clone(), stderr: paths[2].clone(), terminal }
        }
    };
    let pid = std::process::id() as i32;
    let root_path = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_else(|| "rootfs".into());
    let mut record = Record {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        rootfs: if root_path.is_absolute() { root_path } else { a.bundle.join(root_path) },
        pid,
        pid_start: state::start_time(pid).unwrap_or(0),
        status: "creating".into(),
        created: state::rfc3339_now(),
        annotations: spec.annotations().clone().unwrap_or_default().into_iter().collect(),
        ..Default::default()
    };
    let hooks = spec.hooks().clone().unwrap_or_default();
    // Before the VM: the VM takes over the interface the hooks put in the namespace.
    let st = hook_state(&record, "creating");
    crate::hooks::run_all("createRuntime", hooks.create_runtime().as_deref().unwrap_or(&[]), &st)?;
    #[allow(deprecated)]
    crate::hooks::run_all("prestart", hooks.prestart().as_deref().unwrap_or(&[]), &st)?;
    let netns = netns.or_else(|| isola_task::spec::netns(&spec));
    let netns = match netns {
        Some(ns) if has_interface(&ns)? => Some(ns),
        _ => None,
    };
    let copy = bundle_copy(&dir, &a.bundle, &spec, netns.as_deref())?;
    let listener = listen(&dir)?;
    // On record from the start ("creating"), so a `delete` during the boot finds the
    // keeper and ends it.
    dir.save(&record)?;
    let pod = Pod::with_stand_in(
        Box::new(VmBooter { tie_to_parent: true }),
        Arc::new(NoEvents),
        StandInCommand::this_binary(),
        None,
    );
    let req = CreateRequest {
        id: a.id.clone(),
        bundle: copy.to_string_lossy().into_owned(),
        rootfs: vec![],
        stdio,
        config_path: std::env::var_os("ISOLA_CONFIG").map(PathBuf::from),
    };
    pod.create(req)?;
    let cgroup = isola_task::bundle::BundleRecord::load(&copy).and_then(|r| vm_cgroup(&r.vm));
    record.status = "created".into();
    dir.save(&record)?;
    // Last, with nothing left to fail: a failed keeper inside the VM's cgroup would be
    // killed with it by the cleanup.
    if let Some(cg) = cgroup {
        join_cgroup(&cg);
    }
    let k = Arc::new(Keeper { pod, dir, record: Mutex::new(record), relays: Mutex::new(vec![]), spec });
    serve(Arc::clone(&k), listener);
    forward_signals(Arc::clone(&k));
    if let Some(tty) = tty {
        let k = Arc::clone(&k);
        crate::console::follow_size(tty, move |rows, cols| k.pod.resize(&k.id(), "", cols, rows).is_ok());
    }
    // The held fds stay open for the keeper's life (the bridge has its own copies).
    std::mem::forget(held);
    Ok(k)
}

/// Waits for the init to exit, ends the VM and returns the status to exit with.
fn life(k: Arc<Keeper>) -> i32 {
    let id = k.id();
    let code = match k.pod.wait(&id, "") {
        Ok(e) => e.code as i32,
        Err(e) => {
            log::warn!("waiting for {id}: {e}");
            255
        }
    };
    // Out of the VM's cgroup, so it can be removed.
    if let Some(h) = isola_sandbox::cgroup::Hierarchy::detect() {
        join_cgroup(h.root());
    }
    if let Err(e) = k.pod.delete(&id, "") {
        log::warn!("ending {id}'s VM: {e}");
    }
    let _ = std::fs::remove_file(k.dir.socket());
    k.set_status("stopped", Some(code));
    code
}

fn forward_signals(k: Arc<Keeper>) {
    std::thread::spawn(move || loop {
        let Ok(sig) = forwarded().wait() else { return };
        if sig == Signal::SIGWINCH {
            continue;
        }
        if let Err(e) = k.pod.kill(&k.id(), "", sig as u32, false) {
            log::debug!("forwarding {sig}: {e}");
        }
    });
}

/// The control socket, bound before the VM boots (a failure then costs nothing).
fn listen(dir: &Dir) -> Result<UnixListener, RuntimeError> {
    let path = dir.socket();
    let _ = std::fs::remove_file(&path);
    let (_d, short) = crate::control::short_path(&path).map_err(io("binding", &path))?;
    let listener = UnixListener::bind(&short).map_err(io("binding", &path))?;
    // Only root (the runtime's callers) may talk to the keeper.
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    Ok(listener)
}

/// The most control connections (execs included) served at once, one thread each.
const MAX_CONNECTIONS: usize = 256;

fn serve(k: Arc<Keeper>, listener: UnixListener) {
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            use std::sync::atomic::Ordering::SeqCst;
            if open.fetch_add(1, SeqCst) >= MAX_CONNECTIONS {
                open.fetch_sub(1, SeqCst);
                let _ = send_line(&mut conn, &Reply::err(format!("more than {MAX_CONNECTIONS} calls at once")));
                continue;
            }
            let (k, open) = (Arc::clone(&k), Arc::clone(&open));
            std::thread::spawn(move || {
                if let Err(e) = handle(&k, conn) {
                    log::debug!("control connection: {e}");
                }
                open.fetch_sub(1, SeqCst);
            });
        }
    });
}

fn handle(k: &Keeper, conn: UnixStream) -> std::io::Result<()> {
    let mut fds = Some(crate::control::accept_fds(&conn)?);
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    while let Some(req) = read_line::<Request>(&mut r)? {
        if let Request::Exec { .. } = req {
            return crate::keeper_exec::run(k, req, fds.take().unwrap_or_default(), r, w);
        }
        let reply = match answer(k, req) {
            Ok(v) => Reply::ok(v),
            Err(e) => Reply::err(e),
        };
        send_line(&mut w, &reply)?;
    }
    Ok(())
}

fn answer(k: &Keeper, req: Request) -> Result<serde_json::Value, RuntimeError> {
    let id = k.id();
    match req {
        Request::Start => {
            k.pod.start(&id, "")?;
            k.set_status("running", None);
            let hooks = k.spec.hooks().clone().unwrap_or_default();
            let st = hook_state(&k.record(), "running");
            crate::hooks::run_each_warning("poststart", hooks.poststart().as_deref().unwrap_or(&[]), &st);
            Ok(serde_json::Value::Null)
        }
        Request::Kill { exec, signal, all } => {
            k.pod.kill(&id, exec.as_deref().unwrap_or(""), signal, all)?;
            Ok(serde_json::Value::Null)
        }
        Request::Pause | Request::Resume => {
            let pause = req == Request::Pause;
            let (_, _, status, _, _) = k.pod.state(&id, "")?;
            let ok = if pause { status == Status::Running } else { status == Status::Paused };
            if !ok {
                return Err(RuntimeError::WrongState {
                    verb: if pause { "pause" } else { "resume" },
                    id,
                    status: k.record().status,
                });
            }
            k.pod.pause(&id, pause)?;
            k.set_status(if pause { "paused" } else { "running" }, None);
            Ok(serde_json::Value::Null)
        }
        Request::Update { resources } => {
            let res =
                serde_json::from_value(resources).map_err(|e| RuntimeError::Invalid(format!("resources: {e}")))?;
            k.pod.update(&id, res)?;
            Ok(serde_json::Value::Null)
        }
        Request::Stats => Ok(serde_json::to_value(k.pod.stats(&id)?).unwrap_or_default()),
        Request::Pids => {
            let mut pids = vec![std::process::id() as i32];
            if let Ok(relays) = k.relays.lock() {
                pids.extend(relays.iter().copied());
            }
            Ok(serde_json::json!(pids))
        }
        Request::Resize { exec, rows, cols } => {
            k.pod.resize(&id, exec.as_deref().unwrap_or(""), cols, rows)?;
            Ok(serde_json::Value::Null)
        }
        Request::Exec { .. } => Err(RuntimeError::Invalid("exec takes its own connection".into())),
    }
}
