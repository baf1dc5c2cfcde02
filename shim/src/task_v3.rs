//! Task API v3 for containerd 2.x: the same messages as v2 under the service name
//! `containerd.task.v3.Task`. containerd-shim 0.11 registers only v2 on its server,
//! so the same task service is also served, under the v3 name, on a second socket
//! next to the first (`…-v3`); `start` names that one to a containerd that speaks v3.
//! The sandbox API (`sandbox_api.rs`) is served there too: only containerd 2.x uses it.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use containerd_shim::protos::shim::shim_ttrpc::create_task;
use containerd_shim::protos::ttrpc::{MethodHandler, Server};

use containerd_shim_protos::sandbox_sync::create_sandbox;

use crate::sandbox_api::SandboxService;
use crate::task::TaskService;

/// The environment variable `start` sets on the serving shim when containerd asked
/// for v3 (its bootstrap parameters), so a 1.6 host gets no second socket.
pub const ENV: &str = "ISOLA_TASK_API_V3";

const V2: &str = "/containerd.task.v2.Task/";
const V3: &str = "/containerd.task.v3.Task/";

/// The v3 socket's address next to the v2 one (`unix:///run/containerd/s/HASH`).
pub fn address(v2_address: &str) -> String {
    format!("{v2_address}-v3")
}

/// The task methods under the v3 service name.
pub fn methods(task: TaskService) -> HashMap<String, Box<dyn MethodHandler + Send + Sync>> {
    create_task(Arc::new(task)).into_iter().map(|(name, handler)| (name.replacen(V2, V3, 1), handler)).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("task API v3 socket {path}: {source}")]
    Socket { path: String, source: std::io::Error },
    #[error("task API v3 server on {path}: {source}")]
    Server { path: String, source: containerd_shim::protos::ttrpc::Error },
}

/// Serves `task` as v3, and the sandbox API, on the v3 socket for `v2_address`.
/// `None` when a live shim already serves it: this process is the duplicate that
/// `start` spawned for a pod whose shim runs.
pub fn serve(v2_address: &str, task: TaskService, sandbox: SandboxService) -> Result<Option<Server>, Error> {
    let address = address(v2_address);
    let path = address.trim_start_matches("unix://").to_string();
    if Path::new(&path).exists() {
        if UnixStream::connect(&path).is_ok() {
            return Ok(None);
        }
        // Left by a shim that died: nobody answers on it.
        std::fs::remove_file(&path).map_err(|source| Error::Socket { path: path.clone(), source })?;
    }
    // The shim crate may not have made the directory yet (a fresh host's first shim).
    if let Some(dir) = Path::new(&path).parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)
            .map_err(|source| Error::Socket { path: dir.display().to_string(), source })?;
    }
    let mut server = Server::new()
        .bind(&address)
        .map_err(|source| Error::Server { path: path.clone(), source })?
        .register_service(methods(task))
        .register_service(create_sandbox(Arc::new(sandbox)));
    server.start().map_err(|source| Error::Server { path: path.clone(), source })?;
    Ok(Some(server))
}

/// Stops the v3 server and removes its socket.
pub fn stop(server: Server, v2_address: &str) {
    server.shutdown();
    let _ = std::fs::remove_file(address(v2_address).trim_start_matches("unix://"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v3_socket_sits_next_to_the_v2_one() {
        assert_eq!(address("unix:///run/containerd/s/abc"), "unix:///run/containerd/s/abc-v3");
    }
}
