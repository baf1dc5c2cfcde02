//! One process of a container in the guest: spawned through the init helper, held
//! until Start, and its stdio handed to host connections.

use std::fs::File;
use std::io::{BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use isola_protocol::{AgentError, ErrorCode, Response, StdioStream};

use crate::config::InitConfig;
use crate::reaper::Reaper;
use crate::report::{read_report, Report, CONSOLE_FD, REPORT_FD, START_FD};
use crate::stdio::{self, HostEnds};

/// A handler that panicked mid-update still leaves usable state: keep serving.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn err(code: ErrorCode, msg: impl Into<String>) -> AgentError {
    AgentError::new(code, msg)
}

pub(crate) fn os_err(what: &str, e: impl std::fmt::Display) -> AgentError {
    err(ErrorCode::Os, format!("{what}: {e}"))
}

/// One process of a container (its init, or one added by Exec).
pub struct Proc {
    pub pid: i32,
    pub terminal: bool,
    pub(crate) stdio: Mutex<HostEnds>,
    /// A spare handle on the pty master for resizing.
    pub(crate) pty_control: Option<File>,
    pub(crate) start: Mutex<Option<File>>,
    report: Mutex<Option<BufReader<File>>>,
    pub(crate) started: AtomicBool,
    /// When Start let it run (for signals that come before its handlers).
    pub(crate) started_at: Mutex<Option<std::time::Instant>>,
    pub(crate) pending: std::sync::Arc<crate::early_signal::Pending>,
}

/// Runs the init helper for `cfg` and waits until the process is set up and
/// waiting for Start.
pub fn spawn(helper_exe: &Path, reaper: &Reaper, cfg: &InitConfig, dir: &Path, name: &str) -> Result<Proc, AgentError> {
    std::fs::create_dir_all(dir).map_err(|e| os_err("state dir", e))?;
    let cfg_path = dir.join(format!("{name}.json"));
    let json = serde_json::to_vec(cfg).map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
    std::fs::write(&cfg_path, json).map_err(|e| os_err("writing process config", e))?;
    let (start_r, start_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| os_err("pipe", e))?;
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| os_err("pipe", e))?;
    let mut cmd = Command::new(helper_exe);
    cmd.arg("init-helper").arg(&cfg_path).env_clear();
    // A terminal comes from inside the container (over a console socket); pipes from here.
    let (mut host, console) = if cfg.process.terminal {
        let (ours, theirs) = stdio::console_pair().map_err(|e| os_err("console socket", e))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        (stdio::HostEnds::default(), Some((ours, theirs)))
    } else {
        let (host, child) = stdio::pipes().map_err(|e| os_err("stdio", e))?;
        cmd.stdin(Stdio::from(child.stdin)).stdout(Stdio::from(child.stdout)).stderr(Stdio::from(child.stderr));
        (host, None)
    };
    let mut dups = vec![(start_r.as_raw_fd(), START_FD), (report_w.as_raw_fd(), REPORT_FD)];
    if let Some((_, theirs)) = &console {
        dups.push((theirs.as_raw_fd(), CONSOLE_FD));
    }
    // SAFETY: dup2 is async-signal-safe and only touches fds this child inherited;
    // it runs between fork and exec of the helper.
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &dups {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let helper = cmd.spawn().map_err(|e| os_err("starting init helper", e))?;
    let helper_pid = helper.id() as i32;
    // Our copies of the child's ends must go, or EOFs never arrive.
    drop(cmd);
    drop((start_r, report_w));
    let console = console.map(|(ours, theirs)| {
        drop(theirs);
        ours
    });
    let mut report = BufReader::new(File::from(report_r));
    // The helper's "pid" and its child's "ready" race each other: take both in any order.
    let mut pid = None;
    let mut ready = false;
    let mut failure = None;
    while pid.is_none() || !ready {
        match read_report(&mut report) {
            Ok(Report::Pid(p)) => pid = Some(p),
            Ok(Report::Ready) => ready = true,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    reaper.wait(helper_pid, Some(Duration::from_secs(10)));
    reaper.forget(helper_pid);
    if let Some(e) = failure {
        if let Some(p) = pid {
            reaper.wait(p, Some(Duration::from_secs(5)));
            reaper.forget(p);
        }
        return Err(e);
    }
    let pid = pid.ok_or_else(|| err(ErrorCode::Internal, "helper reported no pid"))?;
    if let Some(sock) = &console {
        // Sent before "ready", so it is already waiting in the socket.
        host.pty = Some(stdio::recv_terminal(sock).map_err(|e| os_err("receiving the terminal", e))?);
    }
    let pty_control = host.pty.as_ref().and_then(|m| m.try_clone().ok());
    Ok(Proc {
        pid,
        terminal: cfg.process.terminal,
        stdio: Mutex::new(host),
        pty_control,
        start: Mutex::new(Some(File::from(start_w))),
        report: Mutex::new(Some(report)),
        started: AtomicBool::new(false),
        started_at: Mutex::new(None),
        pending: Default::default(),
    })
}

impl Proc {
    /// Lets the process run; unattached output goes to the log at `log`.
    pub fn start(&self, log: &Path) -> Result<(), AgentError> {
        let p = self;
        let Some(mut start) = lock(&p.start).take() else {
            return Err(err(ErrorCode::FailedPrecondition, "already started"));
        };
        // Streams nobody attached go to a log for `Logs` (detached runs), rather than
        // filling a pipe and blocking the process.
        {
            let mut ends = lock(&p.stdio);
            let unattached: Vec<_> =
                [ends.stdout.take(), ends.stderr.take(), ends.pty.take()].into_iter().flatten().collect();
            if !unattached.is_empty() {
                match crate::log::Log::open(log, crate::log::CAP) {
                    Ok(l) => {
                        let l = std::sync::Arc::new(std::sync::Mutex::new(l));
                        for from in unattached {
                            let l = l.clone();
                            std::thread::spawn(move || crate::log::pump_into(from, l));
                        }
                    }
                    Err(e) => eprintln!("isola-agent: log {}: {e}", log.display()),
                }
            }
        }
        start.write_all(b"s").map_err(|e| os_err("start", e))?;
        drop(start);
        *lock(&p.started_at) = Some(std::time::Instant::now());
        p.started.store(true, Ordering::Release);
        // EOF on the report pipe means exec happened; a line means it did not.
        if let Some(mut report) = lock(&p.report).take() {
            match read_report(&mut report) {
                Err(e) if e.code == ErrorCode::Internal && e.message.contains("closed") => {}
                Err(e) => return Err(e),
                Ok(other) => return Err(err(ErrorCode::Internal, format!("process said {other:?}"))),
            }
        }
        Ok(())
    }

    /// Hands one of its stdio streams to `conn`: replies Ok on it, then copies in
    /// the background.
    pub fn attach(&self, stream: StdioStream, mut conn: File) -> Result<(), AgentError> {
        let mut ends = lock(&self.stdio);
        let available = match stream {
            StdioStream::Stdout => ends.stdout.is_some(),
            StdioStream::Stderr => ends.stderr.is_some(),
            StdioStream::Stdin => ends.stdin.is_some(),
            StdioStream::Tty => ends.pty.is_some(),
        };
        if !available {
            return Err(err(
                ErrorCode::FailedPrecondition,
                format!("{stream:?} is not available (attached already, or wrong kind)"),
            ));
        }
        isola_protocol::frame::write_frame(&mut conn, &Response::Ok).map_err(|e| os_err("attach", e))?;
        let taken = |f: Option<File>| {
            f.ok_or_else(|| err(ErrorCode::FailedPrecondition, format!("{stream:?} is not available")))
        };
        match stream {
            StdioStream::Stdout | StdioStream::Stderr => {
                let from = taken(if stream == StdioStream::Stdout { ends.stdout.take() } else { ends.stderr.take() })?;
                std::thread::spawn(move || stdio::pump(from, conn));
            }
            StdioStream::Stdin => {
                let to = taken(ends.stdin.take())?;
                std::thread::spawn(move || stdio::pump(conn, to));
            }
            StdioStream::Tty => {
                let master = taken(ends.pty.take())?;
                let master_in = master.try_clone().map_err(|e| os_err("pty", e))?;
                let conn_in = conn.try_clone().map_err(|e| os_err("conn", e))?;
                let conn_end = conn.try_clone().map_err(|e| os_err("conn", e))?;
                std::thread::spawn(move || {
                    stdio::pump(master, conn);
                    // The terminal is gone: end the whole connection. A half-close alone
                    // does not reach the host through every vsock backend (vhost-device-vsock
                    // drops it), and it also stops the input copy.
                    let _ = nix::sys::socket::shutdown(conn_end.as_raw_fd(), nix::sys::socket::Shutdown::Both);
                });
                std::thread::spawn(move || stdio::pump(conn_in, master_in));
            }
        }
        Ok(())
    }
}
