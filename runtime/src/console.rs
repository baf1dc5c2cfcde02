//! `--console-socket`: a pty whose master goes to the caller (as runc sends it: the
//! fd in SCM_RIGHTS, the pty's name as the payload) and whose slave we keep, raw, as
//! the relay's end of the guest's terminal. The guest's own pty does the line
//! discipline; the host one only carries bytes and the window size.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::termios;

use crate::error::RuntimeError;

/// `--console-socket` as an absolute path: a keeper or relay runs from another directory.
pub fn absolute_socket(s: Option<&std::path::Path>) -> Result<Option<std::path::PathBuf>, RuntimeError> {
    s.map(|s| std::path::absolute(s).map_err(crate::error::io("resolving", s))).transpose()
}

/// The slave end we keep; the master has gone to the caller.
pub struct Console {
    pub slave: OwnedFd,
}

fn err(socket: &Path, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Console { path: socket.to_path_buf(), why: e.to_string() }
}

/// Makes the pty and hands its master over `socket`.
pub fn hand_over(socket: &Path) -> Result<Console, RuntimeError> {
    let pty = nix::pty::openpty(None, None).map_err(|e| err(socket, format!("openpty: {e}")))?;
    let mut t = termios::tcgetattr(&pty.slave).map_err(|e| err(socket, e))?;
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(&pty.slave, termios::SetArg::TCSANOW, &t).map_err(|e| err(socket, e))?;
    let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))
        .map_err(|e| err(socket, format!("naming the pty: {e}")))?;
    let conn = UnixStream::connect(socket).map_err(|e| err(socket, e))?;
    let name = slave_path.to_string_lossy().into_owned();
    let fds = [pty.master.as_raw_fd()];
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(name.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| err(socket, format!("sending the pty master: {e}")))?;
    drop(pty.master);
    Ok(Console { slave: pty.slave })
}

/// The window size of the terminal on `fd` (rows, cols).
pub fn window_size(fd: &OwnedFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Calls `resize` with the terminal's size now and after every change (polled: the
/// caller resizes the master, and only a controlling terminal would get SIGWINCH),
/// for the life of the process. A size `resize` could not apply yet (the guest's
/// process not started) is tried again.
pub fn follow_size(slave: OwnedFd, mut resize: impl FnMut(u16, u16) -> bool + Send + 'static) {
    std::thread::spawn(move || {
        let mut last = None;
        loop {
            let now = window_size(&slave);
            if let Some((rows, cols)) = now.filter(|_| now != last) {
                if resize(rows, cols) {
                    last = now;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use std::os::fd::FromRawFd;

    #[test]
    fn the_master_goes_over_the_socket_with_the_pty_name() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let c = hand_over(&path).expect("hand over");
        let (conn, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 256];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).expect("recv");
        let fd = msg
            .cmsgs()
            .expect("cmsgs")
            .find_map(|m| match m {
                ControlMessageOwned::ScmRights(f) => f.first().copied(),
                _ => None,
            })
            .expect("an fd");
        let n = msg.bytes;
        assert!(std::str::from_utf8(&buf[..n]).expect("utf8").starts_with("/dev/pts/"), "the pty's name");
        // SAFETY: the fd just arrived in SCM_RIGHTS and is ours alone.
        let master = unsafe { OwnedFd::from_raw_fd(fd) };
        let ws = libc::winsize { ws_row: 33, ws_col: 101, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize we own.
        assert_eq!(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
        assert_eq!(window_size(&c.slave), Some((33, 101)), "the caller's resize is seen on our end");
    }
}
