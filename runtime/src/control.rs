//! The keeper's control socket: one JSON request per line, one JSON reply per line.
//! The CLI's commands (start, kill, exec, pause…) are requests to the keeper, which
//! owns the microVM; an exec's connection stays open until the process exits.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
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
    Kill { exec: Option<String>, signal: u32, all: bool },
    Pause,
    Resume,
    Update { resources: serde_json::Value },
    Stats,
    Pids,
    Resize { exec: Option<String>, rows: u16, cols: u16 },
    /// Runs a process; the reply comes when it started, then an `Exited` line when it ends.
    /// The stdio paths are the relay's (`/proc/PID/fd/N` or a terminal).
    Exec { exec: String, process: serde_json::Value, stdio: [String; 3], terminal: bool, relay_pid: i32 },
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

impl Client {
    pub fn connect(socket: &Path, id: &str) -> Result<Self, RuntimeError> {
        let s = UnixStream::connect(socket)
            .map_err(|e| RuntimeError::Keeper(format!("container {id} is not running (its keeper: {e})")))?;
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
    fn an_endless_or_garbled_line_is_an_error_not_a_hang_or_panic() {
        let long = vec![b'a'; (MAX_LINE + 10) as usize];
        assert!(read_line::<Request>(&mut &long[..]).is_err());
        assert!(read_line::<Request>(&mut &b"{\"op\":\"nope\"}\n"[..]).is_err());
        assert!(read_line::<Request>(&mut &b""[..]).expect("eof").is_none());
    }
}
