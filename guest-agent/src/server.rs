//! Accepts host connections (vsock in the guest, a unix socket with the hybrid-vsock
//! handshake on a host) and serves each on its own thread.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use isola_protocol::frame::{read_frame, write_frame, FrameError};
use isola_protocol::{AgentError, ErrorCode, Request, Response};
use nix::sys::socket::{
    accept4, bind, getpeername, listen, socket, AddressFamily, Backlog, SockFlag, SockType, VsockAddr,
};

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

/// Connections served at once; past this, new ones are closed at once (a flood cannot
/// exhaust the guest's threads or memory, and the host's own calls still get through
/// once the flood's connections close).
pub const MAX_CONNECTIONS: usize = 256;

/// Whether a vsock peer may talk to the agent: only the host (CID 2). Containers share
/// the guest's vsock, so anything else is a process inside the VM.
pub fn peer_allowed(cid: u32) -> bool {
    cid == libc::VMADDR_CID_HOST
}

/// The next connection worth serving. Accept errors (EMFILE, ENOMEM…) are passed over
/// after a pause rather than ending the agent.
fn next_connection(listener: &Listener) -> Option<File> {
    match listener {
        Listener::Vsock(fd) => {
            let raw = match accept4(fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                Ok(r) => r,
                Err(nix::Error::EINTR) => return None,
                Err(e) => {
                    eprintln!("isola-agent: accept: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    return None;
                }
            };
            // SAFETY: accept4 returned a new fd that nothing else owns.
            let conn = unsafe { File::from_raw_fd(raw) };
            match getpeername::<VsockAddr>(conn.as_raw_fd()) {
                Ok(peer) if peer_allowed(peer.cid()) => Some(conn),
                Ok(peer) => {
                    eprintln!("isola-agent: refused a connection from CID {} (only the host may connect)", peer.cid());
                    None
                }
                Err(e) => {
                    eprintln!("isola-agent: peer of a connection: {e}");
                    None
                }
            }
        }
        Listener::Unix(l) => {
            let (mut s, _) = match l.accept() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("isola-agent: accept: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    return None;
                }
            };
            isola_protocol::client::accept_handshake(&mut s).ok()?;
            Some(File::from(OwnedFd::from(s)))
        }
    }
}

/// Serves connections until the process ends; each on its own thread, at most
/// [`MAX_CONNECTIONS`] at once.
pub fn serve(agent: Arc<Agent>, listener: Listener) -> ! {
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let Some(conn) = next_connection(&listener) else { continue };
        if live.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            eprintln!("isola-agent: {MAX_CONNECTIONS} connections open; closing a new one");
            continue;
        }
        live.fetch_add(1, Ordering::AcqRel);
        let (agent, live) = (agent.clone(), live.clone());
        let spawned = std::thread::Builder::new().spawn({
            let live = live.clone();
            move || {
                serve_connection(&agent, conn);
                live.fetch_sub(1, Ordering::AcqRel);
            }
        });
        if let Err(e) = spawned {
            eprintln!("isola-agent: cannot start a connection thread: {e}");
            live.fetch_sub(1, Ordering::AcqRel);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_host_may_connect() {
        assert!(peer_allowed(2));
        for cid in [0, 1, 3, 42, u32::MAX] {
            assert!(!peer_allowed(cid), "CID {cid}");
        }
    }
}
