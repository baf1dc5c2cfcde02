//! Host CPU a start costs: what this process's waited-for children used (the CLI runs,
//! and through them the VMMs, helpers and `ip`/`nft` calls they waited for), and the
//! share of it that was the guest running (vCPU threads), sampled while they live.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// User plus system CPU of every child this process has waited for, µs.
pub fn children_cpu_us() -> u64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the zeroed buffer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, u.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: initialised by the successful call above (and zeroed before it).
    let u = unsafe { u.assume_init() };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(u.ru_utime) + us(u.ru_stime)
}

/// Whether a thread named `comm` runs a guest: QEMU's `CPU n/TCG` and `CPU n/KVM`,
/// isola-vmm's `vcpuN`.
pub fn is_vcpu_thread(comm: &str) -> bool {
    (comm.starts_with("CPU ") && (comm.ends_with("/TCG") || comm.ends_with("/KVM"))) || comm.starts_with("vcpu")
}

/// (comm, ppid, utime + stime in clock ticks) from a `stat` line.
pub fn parse_stat(text: &str) -> Option<(String, i32, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the comm: state, ppid, … utime is field 14 of the line, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((comm, ppid, ticks))
}

/// Samples the vCPU threads of every process below `roots` that started after the
/// sampler did (a pool sandbox's VMM, booted before, is not this start's) until
/// stopped; the last reading of each thread is what it used (a thread's last tens of
/// ms before it ends may be missed).
pub struct VcpuSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<BTreeMap<(i32, i32), u64>>,
    roots: Arc<std::sync::Mutex<BTreeSet<i32>>>,
}

const EVERY: Duration = Duration::from_millis(50);

impl VcpuSampler {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let roots = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let (s, r) = (stop.clone(), roots.clone());
        let earlier: BTreeSet<i32> = all_pids().into_iter().collect();
        let handle = std::thread::spawn(move || {
            let mut seen = BTreeMap::new();
            while !s.load(Ordering::Acquire) {
                let roots = r.lock().map(|g| g.clone()).unwrap_or_default();
                sample(&roots, &earlier, &mut seen);
                std::thread::sleep(EVERY);
            }
            seen
        });
        VcpuSampler { stop, handle, roots }
    }

    /// Counts the processes below `pid` from now on.
    pub fn watch(&self, pid: i32) {
        if let Ok(mut r) = self.roots.lock() {
            r.insert(pid);
        }
    }

    /// vCPU CPU seen, µs, of the processes that ended by now: only those were waited
    /// for, so only their CPU is in [`children_cpu_us`] (a pool's refill, started by a
    /// claim and still running, is the pool's cost, not this start's).
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        let mut seen = self.handle.join().unwrap_or_default();
        let alive: BTreeSet<i32> = all_pids().into_iter().collect();
        seen.retain(|(pid, _), _| !alive.contains(pid));
        // SAFETY: sysconf reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        seen.values().sum::<u64>() * 1_000_000 / hz
    }
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn sample(roots: &BTreeSet<i32>, earlier: &BTreeSet<i32>, seen: &mut BTreeMap<(i32, i32), u64>) {
    if roots.is_empty() {
        return;
    }
    let mut parent = BTreeMap::new();
    let pids = all_pids();
    for &pid in &pids {
        if let Some((_, ppid, _)) =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().as_deref().and_then(parse_stat)
        {
            parent.insert(pid, ppid);
        }
    }
    let below = |mut p: i32| {
        for _ in 0..16 {
            if roots.contains(&p) {
                return true;
            }
            match parent.get(&p) {
                Some(&pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    };
    for &pid in pids.iter().filter(|p| !earlier.contains(p) && below(**p)) {
        for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            if let Some((_, _, ticks)) = parse_stat(&stat).filter(|(comm, _, _)| is_vcpu_thread(comm)) {
                seen.insert((pid, tid), ticks);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_and_vcpu_threads_are_read() {
        let line = "4242 (CPU 0/TCG) S 4240 4240 0 0 -1 4194368 100 0 0 0 250 37 0 0 20 0 3 0 1 0 0";
        assert_eq!(parse_stat(line), Some(("CPU 0/TCG".to_string(), 4240, 287)));
        assert!(is_vcpu_thread("CPU 0/TCG") && is_vcpu_thread("CPU 1/KVM") && is_vcpu_thread("vcpu0"));
        assert!(!is_vcpu_thread("qemu-system-x86") && !is_vcpu_thread("worker") && !is_vcpu_thread("CPU x"));
        assert_eq!(parse_stat("1 (no fields)"), None);
    }

    #[test]
    fn a_waited_childs_cpu_is_counted() {
        let before = children_cpu_us();
        let st =
            std::process::Command::new("sh").args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"]).status();
        assert!(st.expect("sh").success());
        assert!(children_cpu_us() > before, "the busy child's CPU shows");
    }
}
