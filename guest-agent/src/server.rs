//! Accepts host connections (vsock in the guest, a unix socket with the hybrid-vsock
//! handshake on a host) and serves each on its own thread.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;

use isola_protocol::frame::{read_frame, write_frame, FrameError};
use isola_protocol::{AgentError, ErrorCode, Request, Response};
use nix::sys::socket::{accept4, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, VsockAddr};

use crate::agent::Agent;

pub enum Listener {
    Vsock(OwnedFd),
    Unix(UnixListener),
}

/// Listens on vsock `port` for any CID (the host reaches us as CID 2's peer).
pub fn listen_vsock(port: u32) -> std::io::Result<Listener> {
    let fd = socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &VsockAddr::new(libc::VMADDR_CID_ANY, port))?;
    listen(&fd, Backlog::new(128).unwrap_or(Backlog::MAXCONN))?;
    Ok(Listener::Vsock(fd))
}

pub fn serve(agent: Arc<Agent>, listener: Listener) -> std::io::Result<()> {
    loop {
        let conn = match &listener {
            Listener::Vsock(fd) => {
                let raw = match accept4(fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                    Ok(r) => r,
                    Err(nix::Error::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                };
                // SAFETY: accept4 returned a new fd that nothing else owns.
                unsafe { File::from_raw_fd(raw) }
            }
            Listener::Unix(l) => {
                let (mut s, _) = l.accept()?;
                if isola_protocol::client::accept_handshake(&mut s).is_err() {
                    continue;
                }
                File::from(OwnedFd::from(s))
            }
        };
        let agent = agent.clone();
        std::thread::spawn(move || serve_connection(&agent, conn));
    }
}

fn reply(conn: &mut File, r: &Response) -> bool {
    write_frame(conn, r).is_ok()
}

/// One connection: a control channel, or (first request) a stdio or rootfs stream.
pub fn serve_connection(agent: &Agent, mut conn: File) {
    let mut first = true;
    loop {
        let req: Request = match read_frame(&mut conn) {
            Ok(r) => r,
            Err(FrameError::Closed) => return,
            Err(FrameError::Malformed(m)) => {
                // Frame boundaries are intact: say what was wrong and keep serving.
                if !reply(&mut conn, &Response::Error(AgentError::new(ErrorCode::BadRequest, m))) {
                    return;
                }
                continue;
            }
            Err(e) => {
                let _ = reply(&mut conn, &Response::Error(AgentError::new(ErrorCode::BadRequest, e.to_string())));
                return;
            }
        };
        match req {
            Request::AttachStdio { id, exec_id, stream } if first => {
                if let Err(e) = agent.attach(&id, exec_id.as_deref(), stream, conn) {
                    log_err(&e);
                }
                return;
            }
            Request::UploadRootfs { id } if first => {
                if !reply(&mut conn, &Response::Ok) {
                    return;
                }
                let result = agent.receive_rootfs(&id, &mut conn);
                let _ = reply(&mut conn, &result.map(|_| Response::Ok).unwrap_or_else(Response::Error));
                return;
            }
            Request::Shutdown => {
                let _ = reply(&mut conn, &Response::Ok);
                shutdown(agent);
            }
            other => {
                if !reply(&mut conn, &agent.handle(other)) {
                    return;
                }
            }
        }
        first = false;
    }
}

fn log_err(e: &AgentError) {
    eprintln!("isola-agent: {e}");
}

fn shutdown(agent: &Agent) -> ! {
    nix::unistd::sync();
    if agent.is_init() {
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    }
    std::process::exit(0)
}
