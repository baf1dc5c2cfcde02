//! The shim binary's life: `start` (one shim per pod, found by the pod's grouping),
//! the long-running task server, and `delete` (cleanup after a shim that died).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, Config, DeleteResponse, ExitSignal, Flags, StartOpts};

use crate::events::Publisher;
use crate::task::TaskService;
use crate::{bootstrap, sandbox_api, task_v3};
use isola_task::bundle::cleanup_bundle;
use isola_task::guest::VmBooter;
use isola_task::pod::Pod;

pub use crate::info::RUNTIME_ID;

/// Starts (or finds) the pod's shim and returns what `start` prints: the bare v2
/// address, or nothing when the reply was already written as containerd 2.3's
/// `BootstrapResult` naming the v3 socket.
fn start(opts: StartOpts) -> Result<String, containerd_shim::Error> {
    let params = bootstrap::parse_params(&bootstrap::read_stdin(), &opts.id, &opts.namespace);
    let v3 = params.is_some();
    // containerd runs `start` in the bundle: the spec says which pod this is.
    let grouping = match oci_spec::runtime::Spec::load("config.json") {
        Ok(spec) => isola_task::spec::grouping(&spec, &opts.id),
        Err(_) => opts.id.clone(),
    };
    let config = params.and_then(|p| p.config_path).map(|p| p.to_string_lossy().into_owned());
    let mut vars = if v3 { vec![(task_v3::ENV, "1")] } else { Vec::new() };
    if let Some(c) = &config {
        vars.push((sandbox_api::CONFIG_ENV, c.as_str()));
    }
    let (_pid, address) = containerd_shim::spawn(opts, &grouping, vars)?;
    containerd_shim::util::write_address(&address)?;
    if !v3 {
        return Ok(address);
    }
    let reply = bootstrap::encode_result(3, &task_v3::address(&address));
    std::io::stdout()
        .lock()
        .write_all(&reply)
        .map_err(|e| containerd_shim::Error::Other(format!("writing the bootstrap result: {e}")))?;
    Ok(String::new())
}

/// The shim's entry point.
pub fn run(config: Config) {
    // The task engine's background work, in detached copies of this binary.
    isola_sandbox::background::run_if(isola_task::standin::serve);
    isola_sandbox::background::run_if(isola_task::template_maker::serve);
    let args: Vec<String> = std::env::args().collect();
    // containerd 2.x asks `-info` with no namespace; `-v` needs none either.
    if args.iter().skip(1).any(|a| a == "-info" || a == "--info") {
        std::process::exit(crate::info::serve_info());
    }
    if args.len() == 2 && matches!(args[1].as_str(), "-v" | "--v" | "-version" | "--version") {
        print!("{}", crate::info::version());
        std::process::exit(0);
    }
    // containerd-shim's bootstrap needs containerd's environment (TTRPC_ADDRESS, a
    // namespace) even for `delete`; an operator cleaning up by hand has neither.
    if args.last().map(String::as_str) == Some("delete") && std::env::var_os("TTRPC_ADDRESS").is_none() {
        std::process::exit(standalone_delete(&args[1..]));
    }
    containerd_shim::run::<Service>(RUNTIME_ID, Some(config));
}

/// How long the shim may take to end once told to: its VM is already stopped by then.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// containerd sends Create right after `start` returns; a shim that has had none by
/// then was orphaned (its `start` killed, or containerd gone before asking) and ends,
/// instead of waiting for ever with nothing to serve.
pub const UNASKED_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15);

fn exit_if_never_asked(pod: Arc<Pod>, exit: Arc<ExitSignal>) {
    std::thread::spawn(move || {
        std::thread::sleep(UNASKED_LIFETIME);
        if !pod.was_asked() {
            log::warn!("no task was created within {UNASKED_LIFETIME:?} of start: ending this orphaned shim");
            exit.signal();
        }
    });
}

/// `-id ID` (or `--id=ID`) and `-bundle DIR` from a shim command line.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, a)| {
        let bare = a.trim_start_matches('-');
        if a.starts_with('-') && bare == name {
            args.get(i + 1).map(String::as_str)
        } else {
            bare.strip_prefix(name).and_then(|v| v.strip_prefix('=')).filter(|_| a.starts_with('-'))
        }
    })
}

/// `delete` outside containerd: the same cleanup from the bundle (the working
/// directory, or `-bundle`), and the same reply on stdout.
fn standalone_delete(args: &[String]) -> i32 {
    use containerd_shim::protos::protobuf::Message;
    let Some(id) = flag(args, "id") else {
        eprintln!("{RUNTIME_ID}: delete needs -id ID (and runs in the bundle, or takes -bundle DIR)");
        return 1;
    };
    let bundle = match flag(args, "bundle") {
        Some(b) => PathBuf::from(b),
        None => match std::env::current_dir() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{RUNTIME_ID}: delete: the bundle (working directory): {e}");
                return 1;
            }
        },
    };
    cleanup_bundle(&bundle, id);
    let reply = deleted();
    let mut out = std::io::stdout().lock();
    match reply.write_to_writer(&mut out) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: delete: writing the reply: {e}");
            1
        }
    }
}

/// What `delete` answers: the task was killed.
fn deleted() -> DeleteResponse {
    api::DeleteResponse {
        pid: 0,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: Some(crate::events::timestamp(std::time::SystemTime::now())).into(),
        ..Default::default()
    }
}

pub struct Service {
    namespace: String,
    id: String,
    /// Our ttrpc socket (`-socket`), empty for `start` and `delete`.
    socket: PathBuf,
    /// `-socket` as given (`unix://…`): the v3 socket's name is derived from it.
    socket_address: String,
    /// The task API v3 server, when `start` asked for one.
    v3: Mutex<Option<containerd_shim::protos::ttrpc::Server>>,
    exit: Arc<ExitSignal>,
}

impl Service {
    fn serve_v3(&self, pod: &Arc<Pod>) {
        let task = TaskService { pod: Arc::clone(pod), exit: Arc::clone(&self.exit) };
        let sandbox = sandbox_api::SandboxService { pod: Arc::clone(pod), exit: Arc::clone(&self.exit) };
        match task_v3::serve(&self.socket_address, task, sandbox) {
            Ok(server) => match self.v3.lock() {
                Ok(mut v3) => *v3 = server,
                Err(poisoned) => *poisoned.into_inner() = server,
            },
            // containerd then fails to connect and says so; the v2 socket still serves.
            Err(e) => log::error!("{e}"),
        }
    }
}

impl containerd_shim::Shim for Service {
    type T = TaskService;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Service {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            socket: PathBuf::from(args.socket.trim_start_matches("unix://")),
            socket_address: args.socket.clone(),
            v3: Mutex::new(None),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> Result<String, containerd_shim::Error> {
        start(opts)
    }

    fn delete_shim(&mut self) -> Result<DeleteResponse, containerd_shim::Error> {
        let bundle = std::env::current_dir().map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
        cleanup_bundle(&bundle, &self.id);
        Ok(deleted())
    }

    fn wait(&mut self) {
        self.exit.wait();
        // Every exit path stops the VM before signalling. What is left is ttrpc's
        // shutdown, which joins its request handlers: one still inside an agent call to
        // a VM that died would keep this process (and its socket) for that call's whole
        // timeout. The shim goes after a grace period whatever a handler is doing.
        let sockets = [self.socket.clone(), PathBuf::from(task_v3::address(&self.socket_address))];
        std::thread::spawn(move || {
            std::thread::sleep(EXIT_GRACE);
            log::warn!("a request was still being served {EXIT_GRACE:?} after shutdown: exiting anyway");
            for s in &sockets {
                let _ = std::fs::remove_file(s.to_string_lossy().trim_start_matches("unix://"));
            }
            std::process::exit(0);
        });
        let v3 = self.v3.lock().map(|mut v3| v3.take()).unwrap_or_else(|poisoned| poisoned.into_inner().take());
        if let Some(server) = v3 {
            task_v3::stop(server, &self.socket_address);
        }
        // The crate removes the socket only if the bundle's `address` file is still
        // there, and containerd may already have removed the bundle: unlink it here.
        // Open connections (the Shutdown reply) are not affected.
        if !self.socket.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.socket);
        }
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let events = Arc::new(Publisher::new(publisher, self.namespace.clone(), address));
        let sandbox_config = std::env::var_os(sandbox_api::CONFIG_ENV).map(PathBuf::from);
        let pod = Pod::new(Box::new(VmBooter::default()), events, sandbox_config);
        exit_if_never_asked(Arc::clone(&pod), Arc::clone(&self.exit));
        if std::env::var_os(task_v3::ENV).is_some() {
            self.serve_v3(&pod);
        }
        TaskService { pod, exit: Arc::clone(&self.exit) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_flags_are_read_in_either_spelling() {
        let a: Vec<String> = ["-namespace", "k8s.io", "-id", "c1", "--bundle=/b", "delete"].map(String::from).to_vec();
        assert_eq!(flag(&a, "id"), Some("c1"));
        assert_eq!(flag(&a, "bundle"), Some("/b"));
        assert_eq!(flag(&a, "address"), None);
        let b: Vec<String> = ["--id", "x"].map(String::from).to_vec();
        assert_eq!(flag(&b, "id"), Some("x"));
    }
}
