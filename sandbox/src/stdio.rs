//! Bridging a container process's streams to our own stdio (`isola run`, `isola exec`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

use crate::container::{ContainerError, Streams};

/// Background copies between our stdio and a process's streams.
pub struct Bridges {
    /// One message per output copy that has ended.
    ended: Receiver<()>,
    copies: usize,
    /// The output sockets again, to end copies whose EOF never comes.
    ends: Vec<UnixStream>,
}

/// How long output may keep coming once the process has exited.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

type Output = (UnixStream, Box<dyn Write + Send>);

impl Bridges {
    /// Copies the process's output to our stdout/stderr, and our stdin to it when
    /// `stdin` is set (otherwise it reads EOF at once rather than waiting forever).
    pub fn to_stdio(streams: Streams, stdin: bool) -> Result<Self, ContainerError> {
        match streams {
            Streams::Tty(tty) => {
                if stdin {
                    let input = tty.try_clone().map_err(|e| ContainerError::Stream("the terminal".into(), e))?;
                    copy_in_terminal(std::io::stdin(), input);
                }
                Ok(Self::outputs(vec![(tty, Box::new(std::io::stdout()))]))
            }
            Streams::Pipes { stdin: input, stdout, stderr } => {
                if stdin {
                    copy_in(std::io::stdin(), input);
                } else {
                    let _ = input.shutdown(std::net::Shutdown::Write);
                }
                Ok(Self::outputs(vec![(stdout, Box::new(std::io::stdout())), (stderr, Box::new(std::io::stderr()))]))
            }
        }
    }

    /// Starts one copy per output, keeping a handle on each socket to cut it off.
    fn outputs(outputs: Vec<Output>) -> Self {
        let (tx, ended) = channel();
        let copies = outputs.len();
        let ends = outputs.iter().filter_map(|(from, _)| from.try_clone().ok()).collect();
        for (from, to) in outputs {
            copy_out(from, to, tx.clone());
        }
        Bridges { ended, copies, ends }
    }

    /// Waits until the process's output streams hit EOF (everything was printed), or
    /// [`DRAIN_GRACE`] at most: a guest that never closes them cannot hang us.
    pub fn finish(self) {
        self.finish_within(DRAIN_GRACE)
    }

    pub fn finish_within(self, grace: Duration) {
        let until = Instant::now() + grace;
        for _ in 0..self.copies {
            if self.ended.recv_timeout(until.saturating_duration_since(Instant::now())).is_err() {
                log::warn!("the container's output did not end within {grace:?} of its exit; cutting it off");
                for s in &self.ends {
                    let _ = s.shutdown(std::net::Shutdown::Read);
                }
                return;
            }
        }
    }
}

fn copy_out(mut from: UnixStream, mut to: impl Write + Send + 'static, ended: Sender<()>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = to.flush();
        }
        let _ = ended.send(());
    });
}

fn copy_in(mut from: impl Read + Send + 'static, mut to: UnixStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// Our input to a terminal: at its end, the terminal's EOF character (^D), as a user
/// would type it, and the connection stays whole. A half-close would end the whole
/// terminal connection on vsock backends that do not carry half-closes (the
/// container's last output was then lost when `isola run -it` read EOF early).
fn copy_in_terminal(mut from: impl Read + Send + 'static, mut to: UnixStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.write_all(&[VEOF]);
    });
}

/// The terminal's default EOF character (^D).
const VEOF: u8 = 0x04;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminals_input_ends_with_eof_typed_not_a_half_close() {
        let (ours, mut theirs) = UnixStream::pair().expect("pair");
        // The output copy holds the connection too, as in `to_stdio`.
        let _output = ours.try_clone().expect("clone");
        copy_in_terminal(&b"exit 5\n"[..], ours);
        let mut got = [0u8; 8];
        theirs.read_exact(&mut got).expect("input then ^D");
        assert_eq!(&got, b"exit 5\n\x04");
        theirs.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        let e = theirs.read(&mut [0u8; 1]).expect_err("no EOF: the connection stays open");
        assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{e}");
    }

    #[test]
    fn output_that_never_ends_is_cut_off_after_the_grace() {
        let (ours, theirs) = UnixStream::pair().expect("pair");
        let (ours_err, _theirs_err) = UnixStream::pair().expect("pair");
        let b = Bridges::outputs(vec![(ours, Box::new(std::io::sink())), (ours_err, Box::new(std::io::sink()))]);
        let started = Instant::now();
        b.finish_within(Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5), "cut off, not waited for");
        drop(theirs);
    }
}
