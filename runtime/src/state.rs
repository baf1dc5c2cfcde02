//! A container's state under `--root`: one directory per id holding `state.json`
//! (written atomically by whoever changes it), the keeper's control socket, the
//! private bundle copy and a lock file that serialises commands on one id.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io, RuntimeError};

pub const DEFAULT_ROOT: &str = "/run/isola-runtime";
const STATE: &str = "state.json";
pub const SOCKET: &str = "keeper.sock";

/// What the runtime records of a container (its OCI state is derived from it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The caller's bundle (as given to `create`).
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The keeper: the process the caller waits on (the pid-file's pid).
    pub pid: i32,
    /// Its start time (field 22 of /proc/PID/stat), so a recycled pid is never taken for it.
    pub pid_start: u64,
    /// created | running | paused | stopped, as the keeper last wrote it.
    pub status: String,
    /// RFC 3339, as runc prints it.
    pub created: String,
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The exit status once stopped (a code, or 128 + signal).
    pub exit_code: Option<i32>,
}

/// A container's directory.
#[derive(Clone, Debug)]
pub struct Dir {
    pub path: PathBuf,
}

/// The start time of `pid` (None when it is gone or a zombie).
pub use isola_sandbox::procfs::start_ticks as start_time;

impl Dir {
    pub fn new(root: &Path, id: &str) -> Result<Self, RuntimeError> {
        validate_id(id)?;
        Ok(Dir { path: root.join(id) })
    }

    pub fn exists(&self) -> bool {
        self.path.join(STATE).exists()
    }

    pub fn id(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET)
    }

    pub fn bundle_copy(&self) -> PathBuf {
        self.path.join("bundle")
    }

    pub fn load(&self) -> Result<Record, RuntimeError> {
        let p = self.path.join(STATE);
        let bytes = std::fs::read(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RuntimeError::NotFound(self.id()),
            _ => io("reading", &p)(e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Invalid(format!("{}: {e}", p.display())))
    }

    /// Written to a temporary file and renamed, so a reader never sees half of it.
    pub fn save(&self, r: &Record) -> Result<(), RuntimeError> {
        let path = self.path.join(STATE);
        isola_sandbox::files::write_json_atomic(&path, r).map_err(io("writing", &path))
    }

    /// An exclusive lock on the id, held until the returned file is dropped.
    pub fn lock(&self) -> Result<File, RuntimeError> {
        std::fs::create_dir_all(&self.path).map_err(io("creating", &self.path))?;
        let p = self.path.join("lock");
        let f = File::create(&p).map_err(io("opening", &p))?;
        // SAFETY: flock on a file descriptor we own; blocks until the lock is ours.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io("locking", &p)(std::io::Error::last_os_error()));
        }
        Ok(f)
    }
}

impl Record {
    /// Whether the keeper still runs (its pid, with the same start time).
    pub fn keeper_alive(&self) -> bool {
        self.pid > 0 && start_time(self.pid) == Some(self.pid_start)
    }

    /// The status as callers see it: a container whose keeper is gone is stopped.
    pub fn live_status(&self) -> String {
        if self.keeper_alive() {
            self.status.clone()
        } else {
            "stopped".into()
        }
    }

    /// The OCI state document, as `runc state` prints it.
    pub fn oci_state(&self) -> serde_json::Value {
        let status = self.live_status();
        serde_json::json!({
            "ociVersion": crate::globals::OCI_VERSION,
            "id": self.id,
            "pid": if status == "stopped" { 0 } else { self.pid },
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
            "annotations": self.annotations,
        })
    }
}

/// Ids are one path component of safe characters (runc's rule: `^[\w+-\.]+$`).
pub fn validate_id(id: &str) -> Result<(), RuntimeError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::BadId(id.into(), "use letters, digits, _ + - and .".into()))
    }
}

/// Every container under `root`, sorted by id.
pub fn list(root: &Path) -> Vec<(Dir, Record)> {
    let mut out: Vec<(Dir, Record)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let d = Dir { path: e.path() };
            d.load().ok().map(|r| (d, r))
        })
        .collect();
    out.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    out
}

/// RFC 3339 in UTC with nanoseconds, as Go's time.RFC3339Nano prints it.
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_safe_path_component() {
        for good in ["abc", "a-b_c.d+e", "0123456789abcdef"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_print_as_go_rfc3339nano() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_796_000_000, 5), "2026-11-30T00:53:20.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn state_json_has_runc_fields_and_a_dead_keeper_means_stopped() {
        let r = Record {
            id: "c1".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid: i32::MAX,
            pid_start: 1,
            status: "running".into(),
            created: rfc3339(0, 0),
            ..Default::default()
        };
        let v = r.oci_state();
        for k in ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner", "annotations"] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        assert_eq!(v["status"], "stopped", "no such keeper: stopped");
        assert_eq!(v["pid"], 0);
        let me = Record {
            pid: std::process::id() as i32,
            pid_start: start_time(std::process::id() as i32).unwrap_or(0),
            ..r
        };
        assert_eq!(me.oci_state()["status"], "running");
        assert_eq!(me.oci_state()["pid"], std::process::id());
    }

    #[test]
    fn records_round_trip_and_a_missing_one_is_not_found() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = Dir::new(tmp.path(), "c1").expect("dir");
        assert!(matches!(d.load(), Err(RuntimeError::NotFound(id)) if id == "c1"));
        let _l = d.lock().expect("lock");
        let r = Record { id: "c1".into(), status: "created".into(), ..Default::default() };
        d.save(&r).expect("save");
        assert_eq!(d.load().expect("load"), r);
        assert_eq!(list(tmp.path()).len(), 1);
    }
}
