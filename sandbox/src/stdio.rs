//! Bridging a container process's streams to our own stdio (`isola run`, `isola exec`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

use crate::container::{ContainerError, Streams};

/// Background copies between our stdio and a process's streams.
pub struct Bridges {
    outputs: Vec<JoinHandle<()>>,
}

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
                Ok(Bridges { outputs: vec![copy_out(tty, std::io::stdout())] })
            }
            Streams::Pipes { stdin: input, stdout, stderr } => {
                if stdin {
                    copy_in(std::io::stdin(), input);
                } else {
                    let _ = input.shutdown(std::net::Shutdown::Write);
                }
                Ok(Bridges { outputs: vec![copy_out(stdout, std::io::stdout()), copy_out(stderr, std::io::stderr())] })
            }
        }
    }

    /// Waits until the process's output streams hit EOF (everything was printed).
    pub fn finish(self) {
        for h in self.outputs {
            let _ = h.join();
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
