//! The console pump of a QEMU sandbox: QEMU's serial output (a pipe) into the
//! sandbox's console log, capped. QEMU itself cannot be given a file-size limit (its
//! guest RAM is a memfd, which the limit would stop from growing), so the cap lives
//! in this small program of ours (`isola-console`, built with this crate), which keeps
//! draining the pipe once the log is full. It runs as the sandbox's uid from an
//! execute-only copy (non-dumpable from its first instruction), and once started may
//! only read, write and exit ([`super::own_filter::CONSOLE`]).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::backend::unprivileged::Program;
use crate::hypervisor::HypervisorError;

/// How the pump shows in `ps` and is recognised by pid later; also its binary's name.
pub const EXE: &str = "isola-console";

/// The pump's binary (beside this program, or on PATH).
pub fn find() -> Result<PathBuf, HypervisorError> {
    super::require(EXE, "it is built with the isola-sandbox crate: cargo build -p isola-sandbox")
}

/// Copies at most `max_bytes` of `from` into `log`, then discards the rest. It needs
/// nothing but the two descriptors it is given (the caller drops it to the sandbox's
/// uid: [`crate::backend::unprivileged::drop_to`]).
pub fn command(prog: &Program, from: std::io::PipeReader, log: File, max_bytes: u64) -> Command {
    let mut c = Command::new(prog.via_fd());
    c.arg0(EXE).arg(max_bytes.to_string());
    c.stdin(Stdio::from(from)).stdout(Stdio::from(log)).stderr(Stdio::null());
    c
}

/// The pump's `main`: `isola-console MAX_BYTES`, stdin to stdout. Exits 0 at the end of
/// its input, 2 on a bad argument, 3 when it cannot confine itself.
pub fn pump_main() -> i32 {
    let Some(max) = std::env::args().nth(1).and_then(|a| a.parse::<u64>().ok()) else {
        eprintln!("usage: {EXE} MAX_BYTES (stdin to stdout, the rest discarded)");
        return 2;
    };
    if let Err(e) = super::own_filter::confine_self(super::own_filter::CONSOLE, false) {
        eprintln!("{EXE}: {e}");
        return 3;
    }
    pump(0, 1, max);
    0
}

/// Reads `from` until its end, writing the first `max` bytes to `to`. A failed write
/// (a full disk) turns the rest into discarding: the writer of `from` never blocks.
fn pump(from: i32, to: i32, max: u64) {
    let mut buf = [0u8; 64 << 10];
    let mut left = max;
    loop {
        // SAFETY: reads into a buffer we own, at most its length.
        let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            return;
        }
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let mut chunk = &buf[..(n as u64).min(left) as usize];
        while !chunk.is_empty() {
            // SAFETY: writes from a slice of our buffer, at most its length.
            let w = unsafe { libc::write(to, chunk.as_ptr().cast(), chunk.len()) };
            if w < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if w <= 0 {
                left = 0;
                break;
            }
            left -= w as u64;
            chunk = &chunk[w as usize..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_log_stops_at_the_cap_and_the_writer_never_blocks() {
        let d = tempfile::tempdir().expect("tmp");
        let path = d.path().join("console.log");
        let (r, mut w) = std::io::pipe().expect("pipe");
        let log = File::create(&path).expect("log");
        let writer = std::thread::spawn(move || {
            // Far past the cap: the writer would block for ever if the pump stopped reading.
            for _ in 0..256 {
                w.write_all(&[b'x'; 4096]).expect("the pump keeps reading");
            }
        });
        pump(r.as_raw_fd(), log.as_raw_fd(), 1000);
        writer.join().expect("writer");
        assert_eq!(std::fs::metadata(&path).expect("log").len(), 1000);
    }

    #[test]
    fn a_failed_write_turns_into_discarding() {
        let (r, mut w) = std::io::pipe().expect("pipe");
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
        let writer = std::thread::spawn(move || {
            for _ in 0..64 {
                w.write_all(&[b'x'; 4096]).expect("the pump keeps reading");
            }
        });
        pump(r.as_raw_fd(), full.as_raw_fd(), 1 << 20);
        writer.join().expect("writer");
    }
}
