//! A detached container's output on disk, capped: two generations (`X.log` and
//! `X.log.1`) of at most [`CAP`] bytes each, so a chatty container cannot fill the
//! guest's memory-backed filesystem, and `Logs` reads only the tail it returns.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Bytes per generation.
pub const CAP: u64 = 8 << 20;

pub struct Log {
    path: PathBuf,
    cap: u64,
    file: File,
    size: u64,
}

fn older(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    let f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let size = f.metadata()?.len();
    Ok((f, size))
}

impl Log {
    pub fn open(path: &Path, cap: u64) -> std::io::Result<Self> {
        let (file, size) = open_append(path)?;
        Ok(Log { path: path.into(), cap, file, size })
    }

    /// Appends `buf`, starting a new generation first when it would not fit.
    pub fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + buf.len() as u64 > self.cap {
            std::fs::rename(&self.path, older(&self.path))?;
            (self.file, self.size) = open_append(&self.path)?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }
}

/// Copies `from` into the shared log until EOF (stdout and stderr share one log).
pub fn pump_into(mut from: impl Read, log: Arc<Mutex<Log>>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let Ok(mut l) = log.lock() else { break };
                if l.append(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

fn tail_of(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut v = Vec::new();
    f.take(max).read_to_end(&mut v)?;
    Ok(v)
}

/// The last `max` bytes of the log, across both generations.
pub fn tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let newer = tail_of(path, max)?;
    let rest = max.saturating_sub(newer.len() as u64);
    let mut v = if rest > 0 { tail_of(&older(path), rest)? } else { Vec::new() };
    v.extend_from_slice(&newer);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_stays_within_two_generations_and_the_tail_spans_them() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("init.log");
        let mut log = Log::open(&path, 100).expect("open");
        let mut all = Vec::new();
        for i in 0..40u8 {
            let chunk = [b'a' + (i % 26); 30];
            log.append(&chunk).expect("append");
            all.extend_from_slice(&chunk);
        }
        let sizes = [&path, &older(&path)].map(|p| std::fs::metadata(p).expect("generation").len());
        assert!(sizes.iter().all(|s| *s <= 100), "{sizes:?}");
        for max in [10u64, 90, 150] {
            let t = tail(&path, max).expect("tail");
            assert_eq!(t, all[all.len() - t.len()..], "tail {max} is the end of what was written");
            assert!(t.len() as u64 <= max);
        }
        let kept = sizes.iter().sum::<u64>().min(150);
        assert!(sizes[0] < 150, "{sizes:?}");
        assert_eq!(tail(&path, 150).expect("tail").len() as u64, kept, "the older generation fills in");
        assert!(tail(&dir.path().join("none.log"), 10).expect("missing").is_empty());
    }
}
