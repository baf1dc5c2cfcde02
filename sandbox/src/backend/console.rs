//! The console pump of a QEMU sandbox: QEMU's serial output (a pipe) into the
//! sandbox's console log, capped. QEMU itself cannot be given a file-size limit (its
//! guest RAM is a memfd, which the limit would stop from growing), so the cap lives
//! in this small process, which keeps draining the pipe once the log is full.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// How the pump shows in `ps` and is recognised by pid later.
pub const EXE: &str = "isola-console";

/// Copies at most `max_bytes` of `from` into `log`, then discards the rest. It needs
/// nothing but the two descriptors it is given, so it runs as nobody
/// ([`crate::backend::unprivileged::drop_to`]).
pub fn command(from: std::io::PipeReader, log: File, max_bytes: u64) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg0(EXE).args([
        "-c",
        r#"dd bs=64K count="$1" iflag=count_bytes status=none; exec cat >/dev/null"#,
        EXE,
        &max_bytes.to_string(),
    ]);
    c.stdin(Stdio::from(from)).stdout(Stdio::from(log)).stderr(Stdio::null());
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_log_stops_at_the_cap_and_the_writer_never_blocks() {
        let d = tempfile::tempdir().expect("tmp");
        let path = d.path().join("console.log");
        let (r, mut w) = std::io::pipe().expect("pipe");
        let mut c = command(r, File::create(&path).expect("log"), 1000);
        crate::backend::unprivileged::drop_to(&mut c, nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        let mut pump = c.spawn().expect("pump");
        // Far past the cap: the writer would block for ever if the pump stopped reading.
        for _ in 0..256 {
            w.write_all(&[b'x'; 4096]).expect("the pump keeps reading");
        }
        drop(w);
        assert!(pump.wait().expect("wait").success());
        assert_eq!(std::fs::metadata(&path).expect("log").len(), 1000);
    }
}
