//! An exec's host process: the pid `exec --pid-file` names, which containerd's runc
//! shim and conmon wait on and signal. It keeps the stdio it was given (or the pty it
//! made for `--console-socket`), has the keeper run the process with them, forwards
//! signals and window sizes, and exits with the process's status.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::control::{self, read_line, Client, Reply, Request};
use crate::error::RuntimeError;
use crate::keeper::{forwarded, Ready};

pub struct RelayArgs {
    pub socket: PathBuf,
    pub id: String,
    pub exec: String,
    /// The process spec (JSON), read before the caller may delete its file.
    pub process: serde_json::Value,
    pub console_socket: Option<PathBuf>,
}

/// Runs the exec to its end; the status to exit with. `ready` hears once it started.
pub fn run(a: RelayArgs, mut ready: Ready) -> i32 {
    let _ = forwarded().thread_block();
    let mut held: Vec<OwnedFd> = Vec::new();
    let started = start(&a, &mut held);
    let mut client = match started {
        Ok(c) => c,
        Err(e) => {
            ready.send(&format!("error {e}"));
            log::error!("{e}");
            return 1;
        }
    };
    ready.send(&format!("ok {}", std::process::id()));
    drop(ready);
    forward_signals(&a.socket, &a.id, &a.exec);
    if let Some(fd) = held.pop() {
        let (socket, id, exec) = (a.socket.clone(), a.id.clone(), a.exec.clone());
        crate::console::follow_size(fd, move |rows, cols| {
            control::call(&socket, &id, &Request::Resize { exec: Some(exec.clone()), rows, cols }).is_ok()
        });
    }
    match read_line::<Reply>(&mut client.reader) {
        Ok(Some(Reply { exited: Some(code), .. })) => code,
        _ => 255,
    }
}

fn start(a: &RelayArgs, held: &mut Vec<OwnedFd>) -> Result<Client, RuntimeError> {
    let terminal = a.process.get("terminal").and_then(|t| t.as_bool()).unwrap_or(false);
    // The streams wanted (non-empty) and the fds that carry them, handed to the keeper.
    let (stdio, fds): ([String; 3], Vec<RawFd>) = match &a.console_socket {
        Some(sock) => {
            let c = crate::console::hand_over(sock)?;
            crate::keeper::null_stdio()?;
            let fd = c.slave.as_raw_fd();
            held.push(c.slave);
            (["tty".into(), "tty".into(), String::new()], vec![fd, fd])
        }
        None => {
            let open: Vec<RawFd> = (0..3).filter(|fd| is_open(*fd)).collect();
            ([0, 1, 2].map(|fd| if is_open(fd) { format!("fd {fd}") } else { String::new() }), open)
        }
    };
    let mut client = Client::connect_with(&a.socket, &a.id, &fds)?;
    let req = Request::Exec {
        exec: a.exec.clone(),
        process: a.process.clone(),
        stdio,
        terminal: terminal || a.console_socket.is_some(),
        relay_pid: std::process::id() as i32,
    };
    client.call(&req, None)?;
    Ok(client)
}

fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the fd's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

fn forward_signals(socket: &Path, id: &str, exec: &str) {
    let (socket, id, exec) = (socket.to_path_buf(), id.to_string(), exec.to_string());
    std::thread::spawn(move || loop {
        let Ok(sig) = forwarded().wait() else { return };
        if sig == Signal::SIGWINCH {
            continue;
        }
        let req = Request::Kill { exec: Some(exec.clone()), signal: sig as u32, all: false };
        if let Err(e) = control::call(&socket, &id, &req) {
            log::debug!("forwarding {sig}: {e}");
        }
    });
}
