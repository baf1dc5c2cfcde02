//! Bridging containerd's FIFOs (or a terminal) to a guest process's stdio streams, one
//! copy thread per direction. An output FIFO is opened for writing in its thread: the
//! open waits for containerd's reader without holding up Create.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

use isola_sandbox::Streams;

use crate::error::TaskError;
use crate::guest::Guest;

/// The FIFO paths containerd gave for a process; empty means "not wanted".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The running copies of one process's streams.
pub struct Bridge {
    outputs: usize,
    done: Receiver<()>,
}

/// Opens a stdio path. `/proc/self/fd/N` is this process's own fd N, duplicated rather
/// than reopened: a reopened file would lose its offset and append mode, and a socket
/// cannot be reopened at all (`isola-runtime` hands its callers' fds over this way).
fn open(path: &str, write: bool) -> std::io::Result<File> {
    if let Some(fd) = path.strip_prefix("/proc/self/fd/").and_then(|n| n.parse::<i32>().ok()) {
        // SAFETY: F_DUPFD_CLOEXEC makes a new fd (or fails); the File owns only that copy.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `copy` is a fresh fd nobody else owns.
        return Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(copy) });
    }
    if write {
        OpenOptions::new().write(true).open(path)
    } else {
        File::open(path)
    }
}

fn open_output(path: &str) -> Box<dyn Write + Send> {
    if path.is_empty() {
        return Box::new(std::io::sink());
    }
    match open(path, true) {
        Ok(f) => Box::new(f),
        Err(e) => {
            log::warn!("opening {path}: {e}; the output is dropped");
            Box::new(std::io::sink())
        }
    }
}

/// Guest stream -> FIFO until EOF; the output is drained even when nobody reads it, so
/// the process never blocks on a full pipe.
fn copy_out(mut from: UnixStream, path: String, done: Sender<()>) {
    std::thread::spawn(move || {
        let mut to = open_output(&path);
        let mut buf = [0u8; 32 * 1024];
        let mut sink = false;
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !sink && to.write_all(&buf[..n]).is_err() {
                        sink = true;
                    }
                }
            }
        }
        drop(to);
        let _ = done.send(());
    });
}

/// FIFO -> guest stream until the writer closes (containerd's CloseIO), then EOF to the guest.
fn copy_in(path: String, mut to: UnixStream) {
    std::thread::spawn(move || {
        match open(&path, false) {
            Ok(mut from) => {
                let _ = std::io::copy(&mut from, &mut to);
            }
            Err(e) => log::warn!("opening {path}: {e}"),
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

impl Bridge {
    /// Attaches to every stream of the process (before it starts, so nothing is lost).
    pub fn start(guest: &dyn Guest, id: &str, exec_id: Option<&str>, p: &StdioPaths) -> Result<Self, TaskError> {
        let (tx, done) = channel();
        let (input, out, err) = match guest.attach(id, exec_id, p.terminal)? {
            Streams::Tty(tty) => {
                if !p.stdin.is_empty() {
                    let input = tty.try_clone().map_err(crate::error::io("cloning the terminal stream"))?;
                    copy_in(p.stdin.clone(), input);
                }
                copy_out(tty, p.stdout.clone(), tx);
                return Ok(Bridge { outputs: 1, done });
            }
            Streams::Pipes { stdin, stdout, stderr } => (stdin, stdout, stderr),
        };
        if p.stdin.is_empty() {
            // No stdin: the process reads EOF at once rather than waiting forever.
            let _ = input.shutdown(std::net::Shutdown::Write);
        } else {
            copy_in(p.stdin.clone(), input);
        }
        copy_out(out, p.stdout.clone(), tx.clone());
        copy_out(err, p.stderr.clone(), tx);
        Ok(Bridge { outputs: 2, done })
    }

    /// Waits (bounded: a background child may hold the pipe open) until every output
    /// stream reached EOF, so containerd has all the output before it hears of the exit.
    pub fn finish(self, timeout: Duration) {
        let until = Instant::now() + timeout;
        for _ in 0..self.outputs {
            let left = until.saturating_duration_since(Instant::now());
            if self.done.recv_timeout(left).is_err() {
                log::warn!("output still open {timeout:?} after exit; not waiting for it");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_proc_self_fd_path_is_the_same_open_file_not_a_reopened_one() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("out");
        let mut f = File::create(&path).expect("create");
        f.write_all(b"before ").expect("write");
        let mut copy = open(&format!("/proc/self/fd/{}", f.as_raw_fd()), true).expect("dup");
        copy.write_all(b"after").expect("write");
        // A reopened file would have started at offset 0 and overwritten "before".
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "before after");
        assert!(open("/proc/self/fd/999999", true).is_err(), "a closed fd is an error");
    }
}
