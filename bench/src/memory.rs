//! Host memory of a VMM process from /proc/<pid>/smaps: its own resident memory apart
//! from guest RAM, and PSS for density (shared pages split between sharers).

/// Resident and proportional memory of one process, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcMemory {
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// Resident pages of the mapping(s) that hold guest RAM.
    pub guest_rss_kib: u64,
    pub guest_pss_kib: u64,
}

impl ProcMemory {
    /// What the VMM costs beyond the guest's own memory.
    pub fn overhead_kib(&self) -> u64 {
        self.rss_kib.saturating_sub(self.guest_rss_kib)
    }

    pub fn add(&mut self, o: &ProcMemory) {
        self.rss_kib += o.rss_kib;
        self.pss_kib += o.pss_kib;
        self.guest_rss_kib += o.guest_rss_kib;
        self.guest_pss_kib += o.guest_pss_kib;
    }
}

/// `key` `N kB` (a line of smaps, /proc/PID/status or /proc/meminfo) as N.
pub(crate) fn kib(line: &str, key: &str) -> Option<u64> {
    line.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// Parses smaps text. Guest RAM is any mapping between `guest_mib` and `guest_mib`+4 MiB
/// long (both VMMs map it in one piece; the slack covers QEMU's alignment).
pub fn parse_smaps(text: &str, guest_mib: u64) -> ProcMemory {
    let (lo, hi) = (guest_mib << 20, (guest_mib + 4) << 20);
    let mut m = ProcMemory::default();
    let mut in_guest = false;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let len = b.saturating_sub(a);
                in_guest = guest_mib > 0 && (lo..=hi).contains(&len);
                continue;
            }
        }
        if let Some(v) = kib(line, "Rss:") {
            m.rss_kib += v;
            if in_guest {
                m.guest_rss_kib += v;
            }
        } else if let Some(v) = kib(line, "Pss:") {
            m.pss_kib += v;
            if in_guest {
                m.guest_pss_kib += v;
            }
        }
    }
    m
}

pub fn of_pid(pid: i32, guest_mib: u64) -> Option<ProcMemory> {
    std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok().map(|t| parse_smaps(&t, guest_mib))
}

/// Every process in a sandbox's host cgroup together (its VMM, the jailed VMM its
/// supervisor forks, virtiofsd and its sandbox, the vsock daemon): what the sandbox
/// costs the host.
pub fn of_sandbox(
    sb: &isola_sandbox::sandbox::Sandbox,
    guest_mib: u64,
) -> Result<ProcMemory, crate::error::BenchError> {
    let cg = isola_sandbox::cgroup::dir_for(&sb.dir)
        .ok_or_else(|| crate::error::BenchError::Failed(format!("{} has no host cgroup to measure", sb.id)))?;
    let mut m = ProcMemory::default();
    for p in isola_sandbox::cgroup::pids(&cg).into_iter().filter_map(|p| of_pid(p, guest_mib)) {
        m.add(&p);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_ram_mapping_is_told_apart_from_the_vmm() {
        let text = "\
5555-5655 r-xp 00000000 08:01 1 /usr/bin/qemu
Size:               1024 kB
Rss:                 800 kB
Pss:                 400 kB
7f0000000000-7f0008000000 rw-s 00000000 00:01 2 /memfd:mem (deleted)
Size:             131072 kB
Rss:               20000 kB
Pss:               10000 kB
7f1000000000-7f1000100000 rw-p 00000000 00:00 0
Rss:                 100 kB
Pss:                 100 kB
";
        let m = parse_smaps(text, 128);
        assert_eq!((m.rss_kib, m.pss_kib, m.guest_rss_kib, m.guest_pss_kib), (20900, 10500, 20000, 10000));
        assert_eq!(m.overhead_kib(), 900);
        assert_eq!(parse_smaps(text, 0).guest_rss_kib, 0);
    }
}
