//! A container's own host cgroup, carrying its limits where the tools that read the
//! host expect them (kubelet, cAdvisor, containerd's tests read the container's
//! `cgroupsPath`). The container runs in the pod's VM, whose cost is accounted to the
//! pod's cgroup (see [`crate::cgroup`]); this one holds only the task's host stand-in,
//! so its limits are what the container was given (and given again by Update), never a
//! limit that could end the VM. Memory, CPU and pids: one directory on cgroup v2, one
//! per controller on v1.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::cgroup::{io, CgroupError};

/// The limits of a container, as the OCI spec gives them (`None`: not asked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub pids: Option<i64>,
}

impl Limits {
    pub fn from_oci(r: &LinuxResources) -> Self {
        let cpu = r.cpu().as_ref();
        Limits {
            memory_bytes: r.memory().as_ref().and_then(|m| m.limit()),
            cpu_quota: cpu.and_then(|c| c.quota()),
            cpu_period: cpu.and_then(|c| c.period()),
            cpu_shares: cpu.and_then(|c| c.shares()),
            pids: r.pids().as_ref().map(|p| p.limit()),
        }
    }

    /// (file, value) for each controller's directory: `[memory, cpu, pids]` on v1, all
    /// three for the one directory on v2. A negative limit is "no limit".
    fn writes(&self, v2: bool) -> [Vec<(&'static str, String)>; 3] {
        let unlimited = |n: i64, max: &str| if n < 0 { max.to_string() } else { n.to_string() };
        let mut memory = Vec::new();
        let mut cpu = Vec::new();
        let mut pids = Vec::new();
        if v2 {
            if let Some(m) = self.memory_bytes {
                memory.push(("memory.max", unlimited(m, "max")));
            }
            if self.cpu_quota.is_some() || self.cpu_period.is_some() {
                let quota = self.cpu_quota.map_or("max".to_string(), |q| unlimited(q, "max"));
                cpu.push(("cpu.max", format!("{quota} {}", self.cpu_period.unwrap_or(100_000))));
            }
            if let Some(s) = self.cpu_shares {
                // runc's conversion of v1 shares (2..262144) to v2 weight (1..10000).
                let s = s.clamp(2, 262_144);
                cpu.push(("cpu.weight", (1 + ((s - 2) * 9999) / 262_142).to_string()));
            }
        } else {
            if let Some(m) = self.memory_bytes {
                memory.push(("memory.limit_in_bytes", unlimited(m, "-1")));
            }
            // The period first: a quota is checked against the period in place.
            if let Some(p) = self.cpu_period {
                cpu.push(("cpu.cfs_period_us", p.to_string()));
            }
            if let Some(q) = self.cpu_quota {
                cpu.push(("cpu.cfs_quota_us", unlimited(q, "-1")));
            }
            if let Some(s) = self.cpu_shares {
                cpu.push(("cpu.shares", s.to_string()));
            }
        }
        if let Some(p) = self.pids {
            pids.push(("pids.max", unlimited(p, "max")));
        }
        [memory, cpu, pids]
    }
}

/// The container's cgroup: its directory on v2, or its directory in each of v1's
/// memory, cpu and pids hierarchies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsCgroup {
    v2: bool,
    /// `[memory, cpu, pids]` on v1; the one directory three times on v2.
    dirs: [PathBuf; 3],
}

impl LimitsCgroup {
    /// Creates the cgroup at `rel` (a container's `cgroupsPath`, as
    /// [`crate::cgroup::oci_path`] gives it) under the cgroup mount `root`.
    pub fn create(root: &Path, rel: &Path) -> Result<Self, CgroupError> {
        let v2 = root.join("cgroup.controllers").exists();
        let dirs = if v2 {
            let d = root.join(rel);
            [d.clone(), d.clone(), d]
        } else {
            let cpu = ["cpu,cpuacct", "cpu"].iter().map(|c| root.join(c)).find(|p| p.is_dir());
            let cpu = cpu.unwrap_or_else(|| root.join("cpu"));
            [root.join("memory").join(rel), cpu.join(rel), root.join("pids").join(rel)]
        };
        if v2 {
            // Each level hands the controllers down; best effort above the pod's
            // (kubelet has done it there already).
            let parent = root.join(rel.parent().unwrap_or(Path::new("")));
            std::fs::create_dir_all(&parent).map_err(io("creating", &parent))?;
            let mut level = root.to_path_buf();
            for c in rel.parent().into_iter().flat_map(Path::components) {
                let _ = std::fs::write(level.join("cgroup.subtree_control"), "+memory +cpu +pids");
                level.push(c);
            }
            let _ = std::fs::write(level.join("cgroup.subtree_control"), "+memory +cpu +pids");
        }
        let cg = LimitsCgroup { v2, dirs };
        for d in cg.unique_dirs() {
            if let Err(e) = std::fs::create_dir_all(d).map_err(io("creating", d)) {
                cg.remove();
                return Err(e);
            }
        }
        Ok(cg)
    }

    fn unique_dirs(&self) -> Vec<&PathBuf> {
        let mut out: Vec<&PathBuf> = Vec::new();
        for d in &self.dirs {
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    /// Its directories (for the cleanup record).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.unique_dirs().into_iter().cloned().collect()
    }

    /// Writes the limits that are given; the others stay as they are.
    pub fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        for (dir, writes) in self.dirs.iter().zip(limits.writes(self.v2)) {
            for (file, value) in writes {
                let path = dir.join(file);
                std::fs::write(&path, &value).map_err(io("writing", &path))?;
            }
        }
        Ok(())
    }

    /// Moves `pid` (the task's stand-in) into it.
    pub fn add(&self, pid: u32) -> Result<(), CgroupError> {
        for d in self.unique_dirs() {
            let procs = d.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string()).map_err(io("joining", &procs))?;
        }
        Ok(())
    }

    /// Removes it (its stand-in has ended by then, or is killed).
    pub fn remove(&self) {
        for d in self.unique_dirs() {
            crate::cgroup::remove_dir_of(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    fn resources(mem: i64, quota: i64, shares: u64, pids: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(mem).build().expect("mem"))
            .cpu(LinuxCpuBuilder::default().quota(quota).period(100_000u64).shares(shares).build().expect("cpu"))
            .pids(LinuxPidsBuilder::default().limit(pids).build().expect("pids"))
            .build()
            .expect("resources")
    }

    fn read(p: PathBuf) -> String {
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn v1_writes_each_controller_in_its_own_hierarchy() {
        let root = tempfile::tempdir().expect("tmp");
        for c in ["memory", "cpu,cpuacct", "pids"] {
            std::fs::create_dir(root.path().join(c)).expect("controller");
        }
        let rel = Path::new("kubepods/pod1/c1");
        let cg = LimitsCgroup::create(root.path(), rel).expect("create");
        cg.apply(&Limits::from_oci(&resources(32 << 20, 50_000, 512, 64))).expect("apply");
        let r = root.path();
        assert_eq!(read(r.join("memory/kubepods/pod1/c1/memory.limit_in_bytes")), "33554432");
        assert_eq!(read(r.join("cpu,cpuacct/kubepods/pod1/c1/cpu.cfs_quota_us")), "50000");
        assert_eq!(read(r.join("cpu,cpuacct/kubepods/pod1/c1/cpu.cfs_period_us")), "100000");
        assert_eq!(read(r.join("cpu,cpuacct/kubepods/pod1/c1/cpu.shares")), "512");
        assert_eq!(read(r.join("pids/kubepods/pod1/c1/pids.max")), "64");
        // An update changes what it names and leaves the rest.
        let update = Limits { memory_bytes: Some(64 << 20), ..Default::default() };
        cg.apply(&update).expect("update");
        assert_eq!(read(r.join("memory/kubepods/pod1/c1/memory.limit_in_bytes")), "67108864");
        assert_eq!(read(r.join("pids/kubepods/pod1/c1/pids.max")), "64");
        assert_eq!(cg.dirs().len(), 3);
    }

    #[test]
    fn v2_writes_one_directory_and_unlimited_is_max() {
        let root = tempfile::tempdir().expect("tmp");
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").expect("v2");
        let cg = LimitsCgroup::create(root.path(), Path::new("pod1/c1")).expect("create");
        cg.apply(&Limits::from_oci(&resources(-1, 25_000, 1024, -1))).expect("apply");
        let d = root.path().join("pod1/c1");
        assert_eq!(read(d.join("memory.max")), "max");
        assert_eq!(read(d.join("cpu.max")), "25000 100000");
        assert_eq!(read(d.join("cpu.weight")), "39", "runc's shares → weight");
        assert_eq!(read(d.join("pids.max")), "max");
        assert_eq!(read(root.path().join("pod1/cgroup.subtree_control")), "+memory +cpu +pids");
        assert_eq!(cg.dirs(), [d]);
    }

    #[test]
    fn nothing_asked_writes_nothing() {
        let root = tempfile::tempdir().expect("tmp");
        std::fs::write(root.path().join("cgroup.controllers"), "").expect("v2");
        let cg = LimitsCgroup::create(root.path(), Path::new("c1")).expect("create");
        cg.apply(&Limits::default()).expect("apply");
        assert_eq!(std::fs::read_dir(root.path().join("c1")).expect("dir").count(), 0);
    }
}
