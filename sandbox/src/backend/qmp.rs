//! QEMU's monitor protocol (QMP), one command per connection: what the host asks of a
//! running QEMU after boot (the balloon's target). The socket is in the sandbox's
//! root-only directory; QEMU, which its guest may have taken over, answers at most a
//! few bounded lines, read with a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

/// Longest line read, and most lines (events included) before an answer.
const MAX_LINE: u64 = 64 << 10;
const MAX_LINES: usize = 64;

/// Runs `command` with `arguments` and returns its `return` value, or QMP's error.
pub fn execute(sock: &Path, command: &str, arguments: Value, timeout: Duration) -> Result<Value, String> {
    let fail = |e: std::io::Error| format!("QEMU's QMP at {}: {e}", sock.display());
    let s = UnixStream::connect(sock).map_err(fail)?;
    s.set_read_timeout(Some(timeout)).map_err(fail)?;
    s.set_write_timeout(Some(timeout)).map_err(fail)?;
    let mut w = s.try_clone().map_err(fail)?;
    let mut r = BufReader::new(s);
    let greeting = line(&mut r, sock)?;
    if greeting.get("QMP").is_none() {
        return Err(format!("QEMU's QMP at {} greeted with {greeting}", sock.display()));
    }
    for (cmd, args) in [("qmp_capabilities", json!({})), (command, arguments)] {
        writeln!(w, "{}", json!({ "execute": cmd, "arguments": args })).map_err(fail)?;
        let answer = answer(&mut r, sock)?;
        if cmd == command {
            return Ok(answer);
        }
    }
    Err("unreachable: the loop returns on its last command".into())
}

/// The next answer, past any events.
fn answer(r: &mut impl BufRead, sock: &Path) -> Result<Value, String> {
    for _ in 0..MAX_LINES {
        let v = line(r, sock)?;
        if let Some(ret) = v.get("return") {
            return Ok(ret.clone());
        }
        if let Some(e) = v.get("error") {
            return Err(format!("QEMU: {}", e.get("desc").and_then(Value::as_str).unwrap_or("error")));
        }
    }
    Err(format!("QEMU's QMP at {} sent {MAX_LINES} lines and no answer", sock.display()))
}

fn line(r: &mut impl BufRead, sock: &Path) -> Result<Value, String> {
    let mut buf = String::new();
    let n = r.take(MAX_LINE).read_line(&mut buf).map_err(|e| format!("QEMU's QMP at {}: {e}", sock.display()))?;
    if n == 0 || !buf.ends_with('\n') {
        return Err(format!("QEMU's QMP at {} closed or sent a line over {MAX_LINE} bytes", sock.display()));
    }
    serde_json::from_str(&buf).map_err(|e| format!("QEMU's QMP at {} sent {buf:?}: {e}", sock.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pretend QEMU: greets, acknowledges capabilities, sends an event, then answers.
    fn serve(answer: &'static str) -> (tempfile::TempDir, std::path::PathBuf, std::thread::JoinHandle<String>) {
        let d = tempfile::tempdir().expect("tmp");
        let sock = d.path().join("qmp.sock");
        let l = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            let mut w = s.try_clone().expect("clone");
            let mut r = BufReader::new(s);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).expect("greet");
            let mut got = String::new();
            r.read_line(&mut got).expect("caps");
            writeln!(w, r#"{{"return": {{}}}}"#).expect("ok");
            got.clear();
            r.read_line(&mut got).expect("command");
            writeln!(w, r#"{{"event": "BALLOON_CHANGE", "data": {{"actual": 1}}}}"#).expect("event");
            writeln!(w, "{answer}").expect("answer");
            got
        });
        (d, sock, h)
    }

    #[test]
    fn a_command_is_sent_after_capabilities_and_its_answer_found_past_events() {
        let (_d, sock, h) = serve(r#"{"return": {"actual": 268435456}}"#);
        let v = execute(&sock, "query-balloon", json!({}), Duration::from_secs(5)).expect("answer");
        assert_eq!(v["actual"], 268435456u64);
        let sent: Value = serde_json::from_str(&h.join().expect("server")).expect("json");
        assert_eq!(sent["execute"], "query-balloon");
    }

    #[test]
    fn qemus_errors_are_named() {
        let (_d, sock, _h) =
            serve(r#"{"error": {"class": "GenericError", "desc": "No balloon device has been activated"}}"#);
        let e = execute(&sock, "balloon", json!({"value": 1}), Duration::from_secs(5)).expect_err("error");
        assert!(e.contains("No balloon device"), "{e}");
    }
}
