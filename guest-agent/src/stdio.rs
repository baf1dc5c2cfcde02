//! A process's stdio ends held by the agent, and the copy loops that bridge them to
//! host connections (one connection per stream).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
#[cfg(test)]
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// The agent's ends: pipes (stdin write end, stdout/stderr read ends) or a pty master.
#[derive(Default)]
pub struct HostEnds {
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    pub pty: Option<File>,
}

/// The process's ends, given to the helper as fds 0, 1, 2.
pub struct ChildEnds {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Pipes for the three streams.
pub fn pipes() -> std::io::Result<(HostEnds, ChildEnds)> {
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    Ok((
        HostEnds { stdin: Some(in_w.into()), stdout: Some(out_r.into()), stderr: Some(err_r.into()), pty: None },
        ChildEnds { stdin: in_r, stdout: out_w, stderr: err_w },
    ))
}

/// A socket pair for a terminal process: the container process opens its pty inside
/// the container and sends the master back over the child's end.
pub fn console_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).map_err(std::io::Error::from)
}

/// Receives the pty master the container process sent (see `Syscall::open_terminal`).
pub fn recv_terminal(sock: &OwnedFd) -> std::io::Result<File> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(std::io::Error::from)?;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd in our table for us; we own it.
                return Ok(unsafe { File::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::other("the container process sent no terminal"))
}

/// A pseudo-terminal opened by the agent itself (tests of the copy loops).
#[cfg(test)]
pub fn pty() -> std::io::Result<(HostEnds, ChildEnds)> {
    let p = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
    fcntl(p.master.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(std::io::Error::from)?;
    let slave = p.slave;
    let out = slave.try_clone()?;
    let err = slave.try_clone()?;
    Ok((
        HostEnds { pty: Some(p.master.into()), ..Default::default() },
        ChildEnds { stdin: slave, stdout: out, stderr: err },
    ))
}

/// Sets the terminal size on a pty master.
pub fn resize(master: &File, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the whole call.
    let rc = unsafe { libc::ioctl(master.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Copies until EOF (or an error on either side), then shuts down `to`'s write half.
/// A pty master reports EIO once the last slave closes: that is its EOF.
pub fn pump(mut from: impl Read, to: File) {
    let mut to = to;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = nix::sys::socket::shutdown(to.as_raw_fd(), nix::sys::socket::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_carry_bytes_from_child_ends_to_host_ends() {
        let (mut host, child) = pipes().expect("pipes");
        let mut w = File::from(child.stdout);
        w.write_all(b"hello").expect("write");
        drop(w);
        let mut s = String::new();
        host.stdout.take().expect("stdout").read_to_string(&mut s).expect("read");
        assert_eq!(s, "hello");
    }

    #[test]
    fn pty_can_be_resized() {
        let (host, _child) = pty().expect("pty");
        resize(host.pty.as_ref().expect("master"), 40, 120).expect("resize");
    }
}
