//! The host side: connect to a sandbox's agent over hybrid vsock and make calls.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::frame::{read_frame, write_frame, FrameError};
use crate::{
    AgentError, ContainerInfo, ContainerStats, ExitStatus, Request, Response, RootfsSource, SandboxConfig, StdioStream,
    AGENT_PORT, PROTOCOL_VERSION,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {source}")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("vsock handshake with {path} for port {port} failed: {reason}")]
    Handshake { path: PathBuf, port: u32, reason: String },
    #[error("agent: {0}")]
    Frame(#[from] FrameError),
    #[error("agent refused: {0}")]
    Agent(AgentError),
    #[error("unexpected reply {0:?}")]
    Unexpected(Box<Response>),
    #[error("agent speaks protocol {agent}, this host speaks {host}")]
    Version { agent: u32, host: u32 },
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
}

/// Opens a stream to guest `port` through the hybrid-vsock socket at `uds`
/// (`CONNECT <port>\n` → `OK <hostport>\n`), the protocol of Firecracker, Cloud
/// Hypervisor, isola-vmm and vhost-device-vsock alike.
pub fn connect_vsock(uds: &Path, port: u32, timeout: Duration) -> Result<UnixStream, ClientError> {
    let s = UnixStream::connect(uds).map_err(|source| ClientError::Connect { path: uds.into(), source })?;
    let hs = |reason: String| ClientError::Handshake { path: uds.into(), port, reason };
    s.set_read_timeout(Some(timeout)).map_err(|e| hs(e.to_string()))?;
    (&s).write_all(format!("CONNECT {port}\n").as_bytes()).map_err(|e| hs(e.to_string()))?;
    // Read the reply byte by byte: anything after the newline belongs to the stream.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        match (&s).read(&mut byte) {
            Ok(0) => return Err(hs("closed before OK (is anything listening?)".into())),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(hs(e.to_string())),
        }
    }
    let line = String::from_utf8_lossy(&line);
    if !line.starts_with("OK ") {
        return Err(hs(format!("expected OK, got {line:?}")));
    }
    s.set_read_timeout(None).map_err(|e| hs(e.to_string()))?;
    Ok(s)
}

/// A control connection to the agent.
pub struct AgentClient {
    uds: PathBuf,
    stream: UnixStream,
    timeout: Duration,
}

impl AgentClient {
    pub fn connect(uds: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let stream = connect_vsock(uds, AGENT_PORT, timeout)?;
        Ok(Self { uds: uds.into(), stream, timeout })
    }

    /// Retries until the agent listens (the guest is booting) or `deadline` passes.
    pub fn connect_when_ready(uds: &Path, deadline: Duration, timeout: Duration) -> Result<Self, ClientError> {
        let until = std::time::Instant::now() + deadline;
        loop {
            match Self::connect(uds, timeout).and_then(|mut c| c.ping().map(|_| c)) {
                Ok(c) => return Ok(c),
                Err(e @ ClientError::Version { .. }) => return Err(e),
                Err(e) if std::time::Instant::now() >= until => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// One request, one reply, all within `timeout` (None: wait forever, for `Wait`): a
    /// deadline for the whole call, so an agent that trickles bytes cannot stretch it.
    pub fn call_with(&mut self, req: &Request, timeout: Option<Duration>) -> Result<Response, ClientError> {
        let mut s = Deadline::new(&self.stream, timeout);
        s.stream.set_write_timeout(timeout).map_err(FrameError::Io)?;
        write_frame(&mut s, req)?;
        match read_frame::<Response, _>(&mut s) {
            Ok(Response::Error(e)) => Err(ClientError::Agent(e)),
            Ok(r) => Ok(r),
            Err(FrameError::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                Err(ClientError::Timeout(timeout.unwrap_or_default()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let t = self.timeout;
        self.call_with(req, Some(t))
    }

    /// Expects `Ok`.
    pub fn call_ok(&mut self, req: &Request) -> Result<(), ClientError> {
        self.expect(req, Self::ok)
    }

    /// Sends `req` and hands the reply to `pick`, which returns `None` for a reply of
    /// the wrong kind: the one place replies are matched against requests.
    fn expect<T>(
        &mut self,
        req: &Request,
        pick: impl FnOnce(Response) -> Result<T, Response>,
    ) -> Result<T, ClientError> {
        pick(self.call(req)?).map_err(|other| ClientError::Unexpected(Box::new(other)))
    }

    fn ok(r: Response) -> Result<(), Response> {
        match r {
            Response::Ok => Ok(()),
            other => Err(other),
        }
    }

    fn started(r: Response) -> Result<i32, Response> {
        match r {
            Response::Started { pid } => Ok(pid),
            other => Err(other),
        }
    }

    pub fn create_sandbox(&mut self, config: SandboxConfig) -> Result<(), ClientError> {
        self.expect(&Request::CreateSandbox { config }, Self::ok)
    }

    /// Prepares container `id`; its init waits for [`Self::start`]. Returns the init's pid.
    pub fn create_container(
        &mut self,
        id: &str,
        spec: oci_spec::runtime::Spec,
        rootfs: RootfsSource,
    ) -> Result<i32, ClientError> {
        self.expect(&Request::CreateContainer { id: id.into(), spec: Box::new(spec), rootfs }, Self::started)
    }

    /// Starts the init (`exec_id` None) or an exec'd process; returns its pid.
    pub fn start(&mut self, id: &str, exec_id: Option<&str>) -> Result<i32, ClientError> {
        self.expect(&Request::Start { id: id.into(), exec_id: exec_id.map(Into::into) }, Self::started)
    }

    /// Adds process `exec_id` to a running container; it waits for [`Self::start`].
    pub fn exec(&mut self, id: &str, exec_id: &str, process: oci_spec::runtime::Process) -> Result<i32, ClientError> {
        let req = Request::Exec { id: id.into(), exec_id: exec_id.into(), process: Box::new(process) };
        self.expect(&req, Self::started)
    }

    pub fn signal(&mut self, id: &str, exec_id: Option<&str>, signal: i32, all: bool) -> Result<(), ClientError> {
        self.expect(&Request::Signal { id: id.into(), exec_id: exec_id.map(Into::into), signal, all }, Self::ok)
    }

    /// Blocks (no timeout) until the process exits.
    pub fn wait(&mut self, id: &str, exec_id: Option<&str>) -> Result<ExitStatus, ClientError> {
        match self.call_with(&Request::Wait { id: id.into(), exec_id: exec_id.map(Into::into) }, None)? {
            Response::Exited { status } => Ok(status),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    pub fn close_stdin(&mut self, id: &str, exec_id: Option<&str>) -> Result<(), ClientError> {
        self.expect(&Request::CloseStdin { id: id.into(), exec_id: exec_id.map(Into::into) }, Self::ok)
    }

    pub fn resize_tty(&mut self, id: &str, exec_id: Option<&str>, rows: u16, cols: u16) -> Result<(), ClientError> {
        self.expect(&Request::ResizeTty { id: id.into(), exec_id: exec_id.map(Into::into), rows, cols }, Self::ok)
    }

    pub fn stats(&mut self, id: &str) -> Result<ContainerStats, ClientError> {
        self.expect(&Request::Stats { id: id.into() }, |r| match r {
            Response::Stats { stats } => Ok(stats),
            other => Err(other),
        })
    }

    pub fn update(&mut self, id: &str, resources: oci_spec::runtime::LinuxResources) -> Result<(), ClientError> {
        self.expect(&Request::Update { id: id.into(), resources: Box::new(resources) }, Self::ok)
    }

    /// Freezes (`true`) or thaws the container's cgroup.
    pub fn set_paused(&mut self, id: &str, paused: bool) -> Result<(), ClientError> {
        let req = if paused { Request::Pause { id: id.into() } } else { Request::Resume { id: id.into() } };
        self.expect(&req, Self::ok)
    }

    pub fn delete(&mut self, id: &str, force: bool) -> Result<(), ClientError> {
        self.expect(&Request::Delete { id: id.into(), force }, Self::ok)
    }

    pub fn list(&mut self) -> Result<Vec<ContainerInfo>, ClientError> {
        self.expect(&Request::List, |r| match r {
            Response::List { containers } => Ok(containers),
            other => Err(other),
        })
    }

    /// The last `max_bytes` a process printed while nothing was attached.
    pub fn logs(&mut self, id: &str, exec_id: Option<&str>, max_bytes: u32) -> Result<String, ClientError> {
        self.expect(&Request::Logs { id: id.into(), exec_id: exec_id.map(Into::into), max_bytes }, |r| match r {
            Response::Logs { data } => Ok(data),
            other => Err(other),
        })
    }

    /// Asks the guest to power off.
    /// Tells a VM restored from a snapshot that it was: reseeds its RNG with
    /// `entropy` and sets its clock to `unix_time_ns`.
    pub fn restored(&mut self, entropy: Vec<u8>, unix_time_ns: u64) -> Result<(), ClientError> {
        self.expect(&Request::Restored { entropy, unix_time_ns }, Self::ok)
    }

    pub fn shutdown(&mut self) -> Result<(), ClientError> {
        self.expect(&Request::Shutdown, Self::ok)
    }

    pub fn ping(&mut self) -> Result<String, ClientError> {
        match self.call(&Request::Ping)? {
            Response::Pong { protocol, agent } if protocol == PROTOCOL_VERSION => Ok(agent),
            Response::Pong { protocol, .. } => Err(ClientError::Version { agent: protocol, host: PROTOCOL_VERSION }),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// A new connection carrying one stdio stream of a process.
    pub fn attach(&self, id: &str, exec_id: Option<&str>, stream: StdioStream) -> Result<UnixStream, ClientError> {
        let req = Request::AttachStdio { id: id.into(), exec_id: exec_id.map(Into::into), stream };
        self.stream_connection(&req)
    }

    /// A new connection on which to send `id`'s rootfs as a tar stream.
    pub fn upload_rootfs(&self, id: &str) -> Result<UnixStream, ClientError> {
        self.stream_connection(&Request::UploadRootfs { id: id.into() })
    }

    fn stream_connection(&self, req: &Request) -> Result<UnixStream, ClientError> {
        let mut s = connect_vsock(&self.uds, AGENT_PORT, self.timeout)?;
        s.set_read_timeout(Some(self.timeout)).map_err(FrameError::Io)?;
        write_frame(&mut s, req)?;
        match read_frame::<Response, _>(&mut s)? {
            Response::Ok => {
                s.set_read_timeout(None).map_err(FrameError::Io)?;
                Ok(s)
            }
            Response::Error(e) => Err(ClientError::Agent(e)),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }
}

/// A stream whose every read and write gets only the time left until one deadline.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: Option<std::time::Instant>,
}

impl<'a> Deadline<'a> {
    fn new(stream: &'a UnixStream, timeout: Option<Duration>) -> Self {
        Deadline { stream, until: timeout.map(|t| std::time::Instant::now() + t) }
    }

    /// Time left, as a socket timeout; an error once the deadline has passed.
    fn left(&self) -> std::io::Result<Option<Duration>> {
        let Some(until) = self.until else { return Ok(None) };
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        Ok(Some(left))
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(self.left()?)?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(self.left()?)?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serves the hybrid-vsock handshake on a plain unix listener: used by tests that run
/// the agent on the host.
pub fn accept_handshake<S: Read + Write>(s: &mut S) -> std::io::Result<u32> {
    let mut r = BufReader::new(&mut *s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("CONNECT ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad handshake {line:?}")))?;
    drop(r);
    s.write_all(format!("OK {port}\n").as_bytes())?;
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn handshake_then_ping_over_a_unix_socket() {
        let dir = std::env::temp_dir().join(format!("isola-proto-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("v.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).expect("bind");
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            assert_eq!(accept_handshake(&mut s).expect("handshake"), AGENT_PORT);
            let req: Request = read_frame(&mut s).expect("req");
            assert_eq!(req, Request::Ping);
            write_frame(&mut s, &Response::Pong { protocol: PROTOCOL_VERSION + 1, agent: "t".into() }).expect("reply");
        });
        let mut c = AgentClient::connect(&path, Duration::from_secs(5)).expect("connect");
        let e = c.ping().expect_err("version mismatch");
        assert!(matches!(e, ClientError::Version { .. }), "{e}");
        server.join().expect("server");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refused_handshake_is_named() {
        let dir = std::env::temp_dir().join(format!("isola-proto2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("v.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).expect("bind");
        let server = std::thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            drop(s);
        });
        let e = connect_vsock(&path, 7, Duration::from_secs(5)).expect_err("closed");
        assert!(e.to_string().contains("port 7"), "{e}");
        server.join().expect("server");
        let e = connect_vsock(&dir.join("missing.sock"), 7, Duration::from_secs(1)).expect_err("missing");
        assert!(matches!(e, ClientError::Connect { .. }));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_agent_that_trickles_its_reply_hits_the_whole_call_deadline() {
        let dir = tempfile_dir("trickle");
        let path = dir.join("v.sock");
        let l = UnixListener::bind(&path).expect("bind");
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            accept_handshake(&mut s).expect("handshake");
            let _: Request = read_frame(&mut s).expect("req");
            // A valid length prefix, then one byte every 50 ms: each read succeeds in time.
            let _ = s.write_all(&[0, 0, 0, 100]);
            for _ in 0..60 {
                if s.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut c = AgentClient::connect(&path, Duration::from_millis(400)).expect("connect");
        let t = std::time::Instant::now();
        let e = c.ping().expect_err("deadline");
        assert!(matches!(e, ClientError::Timeout(_)), "{e}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the call ended at its deadline, not per read: {:?}",
            t.elapsed()
        );
        drop(c);
        let _ = server.join();
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("isola-proto-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
