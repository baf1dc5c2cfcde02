//! Both ends of the pipes between the agent and an init helper: the fd numbers the
//! helper finds them at, the one-line reports it writes, and how the agent reads them.
//!
//! fd 3: start pipe (read). The container process blocks on it after setup; a byte
//! means start, EOF means the container was deleted before it started.
//! fd 4: report pipe (write, close-on-exec in the container process):
//! `pid <n>`, then `ready`, or `error <message>`. EOF after start means exec succeeded.
//! fd 5 (terminal processes only): a unix socket the container process sends its pty
//! master over (SCM_RIGHTS) before it reports `ready`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};

use isola_protocol::{AgentError, ErrorCode};

pub const START_FD: i32 = 3;
pub const REPORT_FD: i32 = 4;
pub const CONSOLE_FD: i32 = 5;

/// One line in one write(2): lines from the helper and its child share the pipe and
/// must not interleave (writes under PIPE_BUF are atomic).
pub fn say(report: &mut File, line: &str) {
    let mut l = line.replace('\n', " ");
    l.truncate(2000);
    l.push('\n');
    let _ = report.write_all(l.as_bytes());
}

pub fn fail(report: &mut File, code: i32, msg: impl std::fmt::Display) -> ! {
    say(report, &format!("error {msg}"));
    std::process::exit(code)
}

fn err(code: ErrorCode, msg: impl Into<String>) -> AgentError {
    AgentError::new(code, msg)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    Pid(i32),
    Ready,
}

pub fn read_report(r: &mut BufReader<File>) -> Result<Report, AgentError> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => Err(err(ErrorCode::Internal, "report pipe closed")),
        Err(e) => Err(err(ErrorCode::Os, format!("report pipe: {e}"))),
        Ok(_) => {
            let line = line.trim_end();
            if let Some(p) = line.strip_prefix("pid ") {
                return p
                    .parse()
                    .map(Report::Pid)
                    .map_err(|_| err(ErrorCode::Internal, format!("bad pid line {line:?}")));
            }
            if line == "ready" {
                return Ok(Report::Ready);
            }
            let msg = line.strip_prefix("error ").unwrap_or(line).to_string();
            let code = if msg.starts_with("exec ") { ErrorCode::Exec } else { ErrorCode::Os };
            Err(err(code, msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_parse_into_outcomes() {
        let mut tmp = tempfile::tempfile().expect("tmp");
        tmp.write_all(b"pid 42\nready\nerror exec /bin/nope: ENOENT\n").expect("write");
        use std::io::Seek;
        tmp.rewind().expect("rewind");
        let mut r = BufReader::new(tmp);
        assert_eq!(read_report(&mut r).expect("pid"), Report::Pid(42));
        assert_eq!(read_report(&mut r).expect("ready"), Report::Ready);
        let e = read_report(&mut r).expect_err("error");
        assert_eq!(e.code, ErrorCode::Exec);
        assert!(read_report(&mut r).expect_err("eof").message.contains("closed"));
    }
}
