//! The people-readable table of a boot benchmark.

use std::fmt::Write;

use crate::boot::BootBench;

/// Phases in the order they happen; anything else is listed after them.
pub const PHASE_ORDER: &[&str] = &[
    "memory_ready",
    "devices_ready",
    "vcpus_ready",
    "vmm_ready",
    "boot_timer",
    "console_marker",
    "agent_ready",
    "container_created",
    "container_started",
    "container_exited",
    "vmm_exit",
    "vmm_exited",
    "exited",
    "total",
];

/// What each phase means, for the table's legend.
pub const PHASE_MEANING: &[(&str, &str)] = &[
    ("vmm_ready", "VMM set up memory, devices and vCPUs (isola-vmm's own clock)"),
    ("boot_timer", "guest wrote the boot timer: test guest done / Linux /init started"),
    ("console_marker", "the caller saw the guest's marker line on the console"),
    ("vmm_exit", "the VMM saw the guest's reset"),
    ("exited", "the caller reaped the VMM process (total)"),
    ("agent_ready", "the guest agent first answered a ping over vsock"),
    ("container_created", "rootfs uploaded, container set up and waiting to start"),
    ("container_started", "the agent acknowledged Start"),
    ("container_exited", "Wait returned the container's exit status"),
    ("vmm_exited", "the sandbox's VMM and helpers were reaped"),
    ("total", "wall time seen by the caller, from before the VMM spawn"),
];

pub fn ordered_phases<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut v: Vec<String> = names.cloned().collect();
    v.sort_by_key(|n| (PHASE_ORDER.iter().position(|p| p == n).unwrap_or(usize::MAX), n.clone()));
    v.dedup();
    v
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

pub fn table(b: &BootBench) -> String {
    let mut out = String::new();
    let i = &b.inputs;
    let _ = writeln!(
        out,
        "isola bench boot: {} runs (+{} warm-up), {} vCPU, {} MiB, host {} on {}",
        i.runs,
        i.warmup,
        i.vcpus,
        i.mem_mib,
        i.host_kernel,
        i.kvm.describe()
    );
    let _ = writeln!(out, "times in ms since the VMM process was spawned\n");
    let _ = writeln!(
        out,
        "{:<26} {:<18} {:>4} {:>9} {:>9} {:>9} {:>9}",
        "backend / guest", "phase", "n", "min", "p50", "p95", "max"
    );
    for s in &b.series {
        for phase in ordered_phases(s.summary.keys()) {
            let Some(sum) = s.summary.get(&phase) else { continue };
            let _ = writeln!(
                out,
                "{:<26} {:<18} {:>4} {:>9} {:>9} {:>9} {:>9}",
                s.key.to_string(),
                phase,
                sum.n,
                ms(sum.min),
                ms(sum.p50),
                ms(sum.p95),
                ms(sum.max)
            );
        }
        if let Some(o) = crate::Summary::of(&s.overhead_kib) {
            let _ = writeln!(
                out,
                "{:<26} {:<18} {:>4} {:>9} {:>9} {:>9} {:>9}  (KiB: VMM RSS - resident guest RAM)",
                s.key.to_string(),
                "overhead_kib",
                o.n,
                o.min,
                o.p50,
                o.p95,
                o.max
            );
        }
        for f in &s.failures {
            let _ = writeln!(out, "{:<26} FAILED {f}", s.key.to_string());
        }
    }
    if !b.ratios.is_empty() {
        let _ = writeln!(out, "\nratio isola / peer (p50; < 1 means isola is faster)");
        for r in &b.ratios {
            let _ = writeln!(
                out,
                "  {:?} {:<15} vs {:<9} {:>8} / {:>8} ms = {:.2}",
                r.guest,
                r.phase,
                r.peer,
                ms(r.isola_p50_us),
                ms(r.peer_p50_us),
                r.ratio
            );
        }
    }
    for n in &b.not_run {
        let _ = writeln!(out, "not run here: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_sort_by_when_they_happen() {
        let names = ["exited", "zzz", "boot_timer", "vmm_ready"].map(String::from);
        assert_eq!(ordered_phases(names.iter()), ["vmm_ready", "boot_timer", "exited", "zzz"]);
    }
}
