//! The shim binary's life: `start` (one shim per pod, found by the pod's grouping),
//! the long-running task server, and `delete` (cleanup after a shim that died).

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, Config, DeleteResponse, ExitSignal, Flags, StartOpts};

use crate::bundle::cleanup_bundle;
use crate::events::Publisher;
use crate::guest::VmBooter;
use crate::pod::Pod;
use crate::task::TaskService;

pub const RUNTIME_ID: &str = "io.containerd.isola.v2";

/// Starts (or finds) the pod's shim and returns its ttrpc address.
fn start(opts: StartOpts) -> Result<String, containerd_shim::Error> {
    // containerd runs `start` in the bundle: the spec says which pod this is.
    let grouping = match oci_spec::runtime::Spec::load("config.json") {
        Ok(spec) => crate::spec::grouping(&spec, &opts.id),
        Err(_) => opts.id.clone(),
    };
    let (_pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
    containerd_shim::util::write_address(&address)?;
    Ok(address)
}

/// The shim's entry point.
pub fn run(config: Config) {
    containerd_shim::run::<Service>(RUNTIME_ID, Some(config));
}

pub struct Service {
    namespace: String,
    id: String,
    /// Our ttrpc socket (`-socket`), empty for `start` and `delete`.
    socket: PathBuf,
    exit: Arc<ExitSignal>,
}

impl containerd_shim::Shim for Service {
    type T = TaskService;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Service {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            socket: PathBuf::from(args.socket.trim_start_matches("unix://")),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> Result<String, containerd_shim::Error> {
        start(opts)
    }

    fn delete_shim(&mut self) -> Result<DeleteResponse, containerd_shim::Error> {
        let bundle = std::env::current_dir().map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
        cleanup_bundle(&bundle, &self.id);
        Ok(api::DeleteResponse {
            pid: 0,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: Some(crate::events::now()).into(),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
        // The crate removes the socket only if the bundle's `address` file is still
        // there, and containerd may already have removed the bundle: unlink it here.
        // Open connections (the Shutdown reply) are not affected.
        if !self.socket.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.socket);
        }
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let events = Arc::new(Publisher::new(publisher, self.namespace.clone()));
        TaskService { pod: Pod::new(Box::new(VmBooter), events), exit: Arc::clone(&self.exit) }
    }
}
