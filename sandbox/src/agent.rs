//! A sandbox's agent as the host calls it: typed calls over one kept control
//! connection (opened on first use, dropped after a transport error so the next call
//! reconnects), and fresh connections for blocking waits and stdio streams.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use isola_protocol::client::{AgentClient, ClientError};
use isola_protocol::{ExitStatus, StdioStream};

/// Cheap to clone; clones share the control connection.
#[derive(Clone)]
pub struct Agent {
    uds: PathBuf,
    timeout: Duration,
    control: Arc<Mutex<Option<AgentClient>>>,
}

impl Agent {
    /// The agent behind hybrid-vsock socket `uds`; each call may take `timeout`.
    pub fn new(uds: &Path, timeout: Duration) -> Self {
        Agent { uds: uds.into(), timeout, control: Arc::new(Mutex::new(None)) }
    }

    pub fn uds(&self) -> &Path {
        &self.uds
    }

    /// Runs `f` on the control connection, one caller at a time.
    pub fn call<T>(&self, f: impl FnOnce(&mut AgentClient) -> Result<T, ClientError>) -> Result<T, ClientError> {
        // A caller that panicked holding the lock left at worst a half-used connection:
        // it is dropped below on the next error.
        let mut guard = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        let client = match guard.take() {
            Some(c) => guard.insert(c),
            None => guard.insert(AgentClient::connect(&self.uds, self.timeout)?),
        };
        let r = f(client);
        // The agent's own refusal leaves the stream in step; anything else may not.
        if matches!(&r, Err(e) if !matches!(e, ClientError::Agent(_))) {
            *guard = None;
        }
        r
    }

    /// A connection of its own (for calls that block, like `Wait`).
    pub fn connect(&self) -> Result<AgentClient, ClientError> {
        AgentClient::connect(&self.uds, self.timeout)
    }

    pub fn wait(&self, id: &str, exec_id: Option<&str>) -> Result<ExitStatus, ClientError> {
        self.connect()?.wait(id, exec_id)
    }

    /// A new connection carrying one stdio stream of a process.
    pub fn attach(&self, id: &str, exec_id: Option<&str>, stream: StdioStream) -> Result<UnixStream, ClientError> {
        self.connect()?.attach(id, exec_id, stream)
    }

    pub fn ping(&self) -> Result<String, ClientError> {
        self.call(|c| c.ping())
    }

    pub fn list(&self) -> Result<Vec<isola_protocol::ContainerInfo>, ClientError> {
        self.call(|c| c.list())
    }

    /// Asks the guest to power off.
    pub fn shutdown(&self) -> Result<(), ClientError> {
        self.call(|c| c.shutdown())
    }
}
