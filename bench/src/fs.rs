//! `isola bench fs`: sequential write/read and small-file metadata throughput in a
//! container on a virtio-fs volume, against the same script on the host directory it
//! shares, in the same run. busybox does the work on both sides, so only the path
//! differs (plus, on a TCG host, the emulated CPU).

use std::process::Command;

use isola_sandbox::volume::Volume;
use isola_sandbox::StdioStream;

use crate::container::ContainerBenchConfig;
use crate::error::{io, BenchError};

/// What the script does: 64 MiB written with fsync and read back with dd, then 500
/// files created, listed and removed; busybox `time` reports each (10 ms resolution).
pub const SCRIPT: &str = r#"D=$1
time sh -c 'dd if=/dev/zero of=$0/seq bs=1M count=64 conv=fsync 2>/dev/null' $D
time sh -c 'dd if=$0/seq of=/dev/null bs=1M 2>/dev/null' $D
rm -f $D/seq
time sh -c 'mkdir $0/small; i=0; while [ $i -lt 500 ]; do echo x > $0/small/$i; i=$((i+1)); done; ls -l $0/small > /dev/null; rm -r $0/small' $D
"#;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct FsResult {
    pub write_mb_s: f64,
    pub read_mb_s: f64,
    /// Files created, listed and removed per second.
    pub small_files_per_s: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FsBench {
    pub backend: String,
    pub guest: FsResult,
    pub host: FsResult,
}

/// Every "real" line of busybox `time` ("real\t0m 1.23s"), in seconds.
fn real_times(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| {
            let t = l.trim_start().strip_prefix("real")?.trim();
            let (m, s) = t.split_once('m')?;
            Some(m.trim().parse::<f64>().ok()? * 60.0 + s.trim().trim_end_matches('s').parse::<f64>().ok()?)
        })
        .collect()
}

pub fn parse(out: &str) -> Result<FsResult, BenchError> {
    let [w, r, small] = real_times(out)[..] else {
        return Err(BenchError::Failed(format!("expected three timings in {out:?}")));
    };
    // A 10 ms clock: never divide by less than one tick.
    let tick = |t: f64| t.max(0.01);
    Ok(FsResult { write_mb_s: 64.0 / tick(w), read_mb_s: 64.0 / tick(r), small_files_per_s: 500.0 / tick(small) })
}

pub fn run(cfg: &ContainerBenchConfig) -> Result<FsBench, BenchError> {
    let shared = tempfile::tempdir().map_err(io("temporary directory"))?;
    let host_dir = tempfile::tempdir().map_err(io("temporary directory"))?;
    let out = Command::new("busybox")
        .args(["sh", "-c", SCRIPT, "bench"])
        .arg(host_dir.path())
        .output()
        .map_err(io("busybox on the host"))?;
    let host = parse(&(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)))?;

    let mut sb = crate::container::sandbox(cfg, "fs")?;
    let result = (|| {
        let vol = Volume { host: shared.path().into(), guest: "/data".into(), readonly: false };
        let c = crate::container::container(&sb, cfg, &["sh", "-c", SCRIPT, "bench", "/data"], &[vol])?;
        let mut out = c.init().stream(StdioStream::Stdout)?;
        let mut err = c.init().stream(StdioStream::Stderr)?;
        c.start()?;
        let (mut o, mut e) = (String::new(), String::new());
        std::io::Read::read_to_string(&mut out, &mut o).map_err(io("container stdout"))?;
        std::io::Read::read_to_string(&mut err, &mut e).map_err(io("container stderr"))?;
        match c.wait()? {
            status if status.code == 0 => parse(&(o + &e)),
            status => Err(BenchError::Failed(format!("fs script ended with {status:?}: {e}"))),
        }
    })();
    sb.stop();
    Ok(FsBench { backend: cfg.hypervisor.to_string(), guest: result?, host })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_outputs_parse() {
        let out = "real\t0m 0.50s\nuser\t0m 0.00s\nsys\t0m 0.10s\n\
                   real\t0m 0.25s\nuser\t0m 0.00s\nsys\t0m 0.10s\n\
                   real\t0m 2.00s\nuser\t0m 0.10s\nsys\t0m 0.20s\n";
        let r = parse(out).expect("parse");
        assert_eq!((r.write_mb_s, r.read_mb_s, r.small_files_per_s), (128.0, 256.0, 250.0));
        assert!(parse("nothing").is_err());
    }
}
