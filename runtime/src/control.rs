//! The keeper's control socket: one JSON request per line, one JSON reply per line.
//! The CLI's commands (start, kill, exec, pause…) are requests to the keeper, which
//! owns the microVM; an exec's connection stays open until the process exits.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;

/// The longest request line the keeper reads (an exec's process spec included).
pub const MAX_LINE: u64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Start,
    /// `exec`: None is the container's init.
    Kill {
        exec: Option<String>,
        signal: u32,
        all: bool,
    },
    Pause,
    Resume,
    Update {
        resources: serde_json::Value,
    },
    Stats,
    Pids,
    Resize {
        exec: Option<String>,
        rows: u16,
        cols: u16,
    },
    /// Runs a process; the reply comes when it started, then an `Exited` line when it ends.
    /// The stdio paths are the relay's (`/proc/PID/fd/N` or a terminal).
    Exec {
        exec: String,
        process: serde_json::Value,
        stdio: [String; 3],
        terminal: bool,
        relay_pid: i32,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
    /// An exec's exit status (code, or 128 + signal), on its second line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited: Option<i32>,
}

impl Reply {
    pub fn ok(data: serde_json::Value) -> Self {
        Reply { data, ..Default::default() }
    }
    pub fn err(e: impl std::fmt::Display) -> Self {
        Reply { error: Some(e.to_string()), ..Default::default() }
    }
}

pub fn send_line<T: Serialize>(w: &mut impl Write, v: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)
}

/// One line, at most [`MAX_LINE`] bytes; None at EOF.
pub fn read_line<T: for<'de> Deserialize<'de>>(r: &mut impl BufRead) -> std::io::Result<Option<T>> {
    let mut line = String::new();
    let n = std::io::Read::take(&mut *r, MAX_LINE).read_line(&mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with('\n') {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "control line too long or cut short"));
    }
    serde_json::from_str(&line).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A connection to a container's keeper.
pub struct Client {
    pub reader: BufReader<UnixStream>,
    pub writer: UnixStream,
}

/// The first byte of a connection: plain, or carrying fds (an exec's stdio) in SCM_RIGHTS.
pub const PLAIN: u8 = b'C';
pub const WITH_FDS: u8 = b'F';
/// The most fds one connection may carry.
pub const MAX_FDS: usize = 3;

impl Client {
    pub fn connect(socket: &Path, id: &str) -> Result<Self, RuntimeError> {
        Self::connect_with(socket, id, &[])
    }

    /// Connects and hands over `fds` (at most [`MAX_FDS`]) before the first request.
    pub fn connect_with(socket: &Path, id: &str, fds: &[RawFd]) -> Result<Self, RuntimeError> {
        let not_running =
            |e: std::io::Error| RuntimeError::Keeper(format!("container {id} is not running (its keeper: {e})"));
        let (_dir, short) = short_path(socket).map_err(not_running)?;
        let s = UnixStream::connect(&short).map_err(not_running)?;
        let first = if fds.is_empty() { [PLAIN] } else { [WITH_FDS] };
        let iov = [std::io::IoSlice::new(&first)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        sendmsg::<()>(s.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
            .map_err(|e| RuntimeError::Keeper(format!("connecting: {e}")))?;
        let writer = s.try_clone().map_err(|e| RuntimeError::Keeper(e.to_string()))?;
        Ok(Client { reader: BufReader::new(s), writer })
    }

    /// Sends a request and reads its (first) reply; a reply's error becomes an error.
    pub fn call(&mut self, req: &Request, timeout: Option<Duration>) -> Result<serde_json::Value, RuntimeError> {
        let _ = self.writer.set_read_timeout(timeout);
        send_line(&mut self.writer, req).map_err(|e| RuntimeError::Keeper(format!("sending: {e}")))?;
        match read_line::<Reply>(&mut self.reader) {
            Ok(Some(Reply { error: Some(e), .. })) => Err(RuntimeError::Keeper(e)),
            Ok(Some(r)) => Ok(r.data),
            Ok(None) => Err(RuntimeError::Keeper("the keeper closed the connection".into())),
            Err(e) => Err(RuntimeError::Keeper(format!("reading its reply: {e}"))),
        }
    }
}

/// The keeper's side of a connection's first byte: the fds it carried (none for a plain one).
pub fn accept_fds(s: &UnixStream) -> std::io::Result<Vec<OwnedFd>> {
    let mut first = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut first)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let msg = recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(got) = c {
            // SAFETY: each fd just arrived in SCM_RIGHTS and is ours alone.
            fds.extend(got.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    match (msg.bytes, first[0]) {
        (1, PLAIN) if fds.is_empty() => Ok(fds),
        (1, WITH_FDS) if !truncated && !fds.is_empty() && fds.len() <= MAX_FDS => Ok(fds),
        _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad control connection preamble")),
    }
}

/// A socket path as short as can be: sun_path holds 107 bytes, and a runtime root
/// under Docker's exec root with a 64-character id runs past it. The directory is
/// opened and named through `/proc/self/fd`; keep the returned file while binding or
/// connecting.
pub fn short_path(path: &Path) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("a socket path needs a file name"))?;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(dir)?;
    let short = std::path::PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())).join(name);
    Ok((f, short))
}

/// One request, one reply.
pub fn call(socket: &Path, id: &str, req: &Request) -> Result<serde_json::Value, RuntimeError> {
    Client::connect(socket, id)?.call(req, Some(Duration::from_secs(60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_one_tagged_line() {
        let reqs = [
            Request::Start,
            Request::Kill { exec: None, signal: 15, all: true },
            Request::Resize { exec: Some("e1".into()), rows: 24, cols: 80 },
            Request::Exec {
                exec: "e1".into(),
                process: serde_json::json!({"args": ["sh"]}),
                stdio: ["/proc/1/fd/0".into(), "/proc/1/fd/1".into(), "/proc/1/fd/2".into()],
                terminal: false,
                relay_pid: 1,
            },
        ];
        for r in reqs {
            let mut buf = Vec::new();
            send_line(&mut buf, &r).expect("encode");
            assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
            let back: Request = read_line(&mut &buf[..]).expect("decode").expect("a line");
            assert_eq!(back, r);
        }
    }

    #[test]
    fn fds_cross_in_the_preamble_and_a_plain_connection_has_none() {
        let tmp = tempfile::tempdir().expect("tmp");
        // Deeper than sun_path can hold: bound and reached through /proc/self/fd.
        let deep = tmp.path().join("d".repeat(100));
        std::fs::create_dir(&deep).expect("deep dir");
        let path = deep.join("k.sock");
        let (_d, short) = short_path(&path).expect("short");
        let l = std::os::unix::net::UnixListener::bind(&short).expect("bind");
        let f = std::fs::File::create(tmp.path().join("out")).expect("file");
        let _c = Client::connect_with(&path, "c1", &[f.as_raw_fd(), f.as_raw_fd()]).expect("connect");
        let (s, _) = l.accept().expect("accept");
        let fds = accept_fds(&s).expect("fds");
        assert_eq!(fds.len(), 2);
        std::io::Write::write_all(&mut std::fs::File::from(fds.into_iter().next().expect("fd")), b"x").expect("write");
        assert_eq!(std::fs::read(tmp.path().join("out")).expect("read"), b"x");
        let _p = Client::connect(&path, "c1").expect("connect");
        let (s, _) = l.accept().expect("accept");
        assert!(accept_fds(&s).expect("plain").is_empty());
    }

    #[test]
    fn an_endless_or_garbled_line_is_an_error_not_a_hang_or_panic() {
        let long = vec![b'a'; (MAX_LINE + 10) as usize];
        assert!(read_line::<Request>(&mut &long[..]).is_err());
        assert!(read_line::<Request>(&mut &b"{\"op\":\"nope\"}\n"[..]).is_err());
        assert!(read_line::<Request>(&mut &b""[..]).expect("eof").is_none());
    }
}
