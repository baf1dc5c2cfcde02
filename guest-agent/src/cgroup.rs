//! cgroup v2: one directory per container under the agent's root, with the spec's
//! memory, CPU and pids limits, freezing, and statistics.

use std::path::{Path, PathBuf};

use isola_protocol::ContainerStats;
use oci_spec::runtime::LinuxResources;

#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {source}")]
pub struct CgroupError {
    path: PathBuf,
    source: std::io::Error,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError { path: path.into(), source })
}

/// Limits as cgroup v2 file writes: (file, value).
///
/// A zero is "not set", as runc reads it: `docker update -m` sends the container's
/// whole resources, CPU quota, period and shares of 0 included.
pub fn limit_writes(r: &LinuxResources) -> Vec<(&'static str, String)> {
    let mut w = Vec::new();
    if let Some(limit) = r.memory().as_ref().and_then(|m| m.limit()).filter(|l| *l != 0) {
        w.push(("memory.max", if limit < 0 { "max".into() } else { limit.to_string() }));
        // No swap in the guest: the limit is the limit.
        w.push(("memory.swap.max", "0".into()));
    }
    if let Some(cpu) = r.cpu() {
        let period = cpu.period().filter(|p| *p != 0);
        if let Some(quota) = cpu.quota().filter(|q| *q != 0 || period.is_some()) {
            let period = period.unwrap_or(100_000);
            w.push(("cpu.max", if quota <= 0 { format!("max {period}") } else { format!("{quota} {period}") }));
        }
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            // The runc conversion of cgroup v1 shares (2..262144) to v2 weight (1..10000).
            let weight = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
            w.push(("cpu.weight", weight.to_string()));
        }
    }
    if let Some(limit) = r.pids().as_ref().map(|p| p.limit()).filter(|l| *l != 0) {
        w.push(("pids.max", if limit < 0 { "max".into() } else { limit.to_string() }));
    }
    w
}

pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    /// Creates `<root>/<id>` with the controllers enabled and the limits written.
    pub fn create(root: &Path, id: &str, resources: Option<&LinuxResources>) -> Result<Self, CgroupError> {
        std::fs::create_dir_all(root).map_err(|source| CgroupError { path: root.into(), source })?;
        // Enable controllers from the top down; some may be missing, which is fine.
        // One write per controller: a single write fails whole if any one is missing.
        for dir in root.parent().into_iter().chain(std::iter::once(root)) {
            for c in ["+memory", "+pids", "+cpu", "+io"] {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), c);
            }
        }
        let path = root.join(id);
        std::fs::create_dir_all(&path).map_err(|source| CgroupError { path: path.clone(), source })?;
        let cg = Self { path };
        if let Some(r) = resources {
            cg.update(r)?;
        }
        Ok(cg)
    }

    /// Writes the limits `r` sets; those it leaves out keep their values.
    pub fn update(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        for (file, value) in limit_writes(r) {
            if file == "memory.swap.max" && !self.path.join(file).exists() {
                continue;
            }
            write(&self.path.join(file), &value)?;
        }
        Ok(())
    }

    /// The processes in the cgroup now.
    pub fn pids(&self) -> Vec<i32> {
        self.read("cgroup.procs").lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        write(&self.path.join("cgroup.freeze"), if frozen { "1" } else { "0" })
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path.join(file)).unwrap_or_default()
    }

    pub fn oom_kills(&self) -> u64 {
        keyed(&self.read("memory.events"), "oom_kill").unwrap_or(0)
    }

    pub fn stats(&self) -> ContainerStats {
        let cpu = self.read("cpu.stat");
        let io = self.read("io.stat");
        let sum_io = |key: &str| -> u64 {
            io.split_whitespace().filter_map(|kv| kv.strip_prefix(key)?.parse::<u64>().ok()).sum()
        };
        let num = |f: &str| self.read(f).trim().parse::<u64>().ok();
        ContainerStats {
            cpu_usage_usec: keyed(&cpu, "usage_usec").unwrap_or(0),
            cpu_user_usec: keyed(&cpu, "user_usec").unwrap_or(0),
            cpu_system_usec: keyed(&cpu, "system_usec").unwrap_or(0),
            memory_current: num("memory.current").unwrap_or(0),
            memory_max: num("memory.max"),
            memory_oom_kills: self.oom_kills(),
            pids_current: num("pids.current").unwrap_or(0),
            pids_max: num("pids.max"),
            io_read_bytes: sum_io("rbytes="),
            io_write_bytes: sum_io("wbytes="),
            pids: self
                .read("cgroup.procs")
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .take(isola_protocol::MAX_PIDS_LISTED)
                .collect(),
        }
    }

    /// Kills what is left and removes the directory.
    pub fn destroy(&self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if std::fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// `key value` lines (cpu.stat, memory.events).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    #[test]
    fn spec_resources_become_cgroup_v2_writes() {
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(64 << 20).build().expect("mem"))
            .cpu(LinuxCpuBuilder::default().quota(50_000i64).period(100_000u64).shares(1024u64).build().expect("cpu"))
            .pids(LinuxPidsBuilder::default().limit(32).build().expect("pids"))
            .build()
            .expect("resources");
        let w = limit_writes(&r);
        assert!(w.contains(&("memory.max", (64u64 << 20).to_string())));
        assert!(w.contains(&("cpu.max", "50000 100000".into())));
        assert!(w.contains(&("cpu.weight", "39".into())));
        assert!(w.contains(&("pids.max", "32".into())));
    }

    /// What `docker update -m 64m` sends: the whole resources, zeros for what was never
    /// set. Only the memory limit is written (a `cpu.max` of "max 0" is EINVAL).
    #[test]
    fn zeros_are_not_set_as_runc_reads_them() {
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(64 << 20).build().expect("mem"))
            .cpu(LinuxCpuBuilder::default().quota(0i64).period(0u64).shares(0u64).build().expect("cpu"))
            .pids(LinuxPidsBuilder::default().limit(0).build().expect("pids"))
            .build()
            .expect("resources");
        let files: Vec<&str> = limit_writes(&r).into_iter().map(|(f, _)| f).collect();
        assert_eq!(files, ["memory.max", "memory.swap.max"]);
        let unlimited = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().quota(-1i64).period(50_000u64).build().expect("cpu"))
            .build()
            .expect("resources");
        assert_eq!(limit_writes(&unlimited), [("cpu.max", "max 50000".to_string())]);
    }

    #[test]
    fn update_rewrites_only_the_limits_it_names() {
        let root = tempfile::tempdir().expect("tmp");
        let first = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(64 << 20).build().expect("mem"))
            .pids(LinuxPidsBuilder::default().limit(32).build().expect("pids"))
            .build()
            .expect("resources");
        let cg = Cgroup::create(root.path(), "c1", Some(&first)).expect("create");
        let later = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(128 << 20).build().expect("mem"))
            .build()
            .expect("resources");
        cg.update(&later).expect("update");
        let read = |f: &str| std::fs::read_to_string(cg.path.join(f)).expect(f);
        assert_eq!(read("memory.max"), (128u64 << 20).to_string());
        assert_eq!(read("pids.max"), "32");
        std::fs::write(cg.path.join("cgroup.procs"), "12\n34\n").expect("procs");
        assert_eq!(cg.pids(), vec![12, 34]);
        // A cgroup directory that vanished is an error naming the file.
        std::fs::remove_dir_all(&cg.path).expect("rm");
        let e = cg.update(&later).expect_err("gone");
        assert!(e.to_string().contains("memory.max"), "{e}");
    }

    #[test]
    fn keyed_files_parse() {
        let text = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n";
        assert_eq!(keyed(text, "oom_kill"), Some(2));
        assert_eq!(keyed(text, "oom"), Some(1));
        assert_eq!(keyed(text, "nope"), None);
    }
}
