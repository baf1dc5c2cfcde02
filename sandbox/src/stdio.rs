//! Bridging a container process's streams to our own stdio (`isola run`, `isola exec`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::channel;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::container::{ContainerError, Streams};

/// Background copies between our stdio and a process's streams.
pub struct Bridges {
    outputs: Vec<JoinHandle<()>>,
    /// The output sockets again, to end copies whose EOF never comes.
    ends: Vec<UnixStream>,
}

/// How long output may keep coming once the process has exited.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

impl Bridges {
    /// Copies the process's output to our stdout/stderr, and our stdin to it when
    /// `stdin` is set (otherwise it reads EOF at once rather than waiting forever).
    pub fn to_stdio(streams: Streams, stdin: bool) -> Result<Self, ContainerError> {
        match streams {
            Streams::Tty(tty) => {
                if stdin {
                    let input = tty.try_clone().map_err(|e| ContainerError::Stream("the terminal".into(), e))?;
                    copy_in(std::io::stdin(), input);
                }
                let ends = tty.try_clone().into_iter().collect();
                Ok(Bridges { outputs: vec![copy_out(tty, std::io::stdout())], ends })
            }
            Streams::Pipes { stdin: input, stdout, stderr } => {
                if stdin {
                    copy_in(std::io::stdin(), input);
                } else {
                    let _ = input.shutdown(std::net::Shutdown::Write);
                }
                let ends = [&stdout, &stderr].iter().filter_map(|s| s.try_clone().ok()).collect();
                Ok(Bridges {
                    outputs: vec![copy_out(stdout, std::io::stdout()), copy_out(stderr, std::io::stderr())],
                    ends,
                })
            }
        }
    }

    /// Waits until the process's output streams hit EOF (everything was printed), or
    /// [`DRAIN_GRACE`] at most: a guest that never closes them cannot hang us.
    pub fn finish(self) {
        self.finish_within(DRAIN_GRACE)
    }

    pub fn finish_within(self, grace: Duration) {
        let (tx, rx) = channel();
        let n = self.outputs.len();
        for h in self.outputs {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = h.join();
                let _ = tx.send(());
            });
        }
        let until = std::time::Instant::now() + grace;
        let mut done = 0;
        while done < n {
            match rx.recv_timeout(until.saturating_duration_since(std::time::Instant::now())) {
                Ok(()) => done += 1,
                Err(_) => {
                    log::warn!("the container's output did not end within {grace:?} of its exit; cutting it off");
                    for s in &self.ends {
                        let _ = s.shutdown(std::net::Shutdown::Read);
                    }
                    break;
                }
            }
        }
    }
}

fn copy_out(mut from: UnixStream, mut to: impl Write + Send + 'static) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = to.flush();
        }
    })
}

fn copy_in(mut from: impl Read + Send + 'static, mut to: UnixStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_that_never_ends_is_cut_off_after_the_grace() {
        let (ours, theirs) = UnixStream::pair().expect("pair");
        let (ours_err, _theirs_err) = UnixStream::pair().expect("pair");
        let ends = vec![ours.try_clone().expect("clone"), ours_err.try_clone().expect("clone")];
        let b = Bridges { outputs: vec![copy_out(ours, std::io::sink()), copy_out(ours_err, std::io::sink())], ends };
        let started = std::time::Instant::now();
        b.finish_within(Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5), "cut off, not waited for");
        drop(theirs);
    }
}
