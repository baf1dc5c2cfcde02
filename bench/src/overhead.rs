//! `isola bench overhead`: what a VMM costs beyond its guest's memory, with the same
//! idle test guest (booted, halted) under isola-vmm and QEMU, measured from smaps.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc::channel;
use std::time::Duration;

use isola_sandbox::backend::probe_command as command;
use isola_sandbox::hypervisor::BOOT_PROBE_CMDLINE;
use isola_sandbox::{BootSpec, HypervisorKind, KvmKind, QemuAccel};

use crate::error::{io, BenchError};
use crate::memory::{self, ProcMemory};
use crate::stats::Summary;

pub const IDLE_MARKER: &str = "isola-guest: idle";

#[derive(Clone, Debug, serde::Serialize)]
pub struct OverheadSeries {
    pub backend: String,
    pub mem_mib: u64,
    pub samples: Vec<ProcMemory>,
    /// VMM RSS minus resident guest RAM, KiB.
    pub overhead_kib: Option<Summary>,
    pub failures: Vec<String>,
    /// Why this peer could not run on this host at all.
    pub not_run: Option<String>,
}

/// Boots the idle guest, waits for its marker, reads the VMM's smaps, kills it.
pub fn measure_once(
    kind: HypervisorKind,
    accel: QemuAccel,
    kvm: KvmKind,
    guest: &Path,
    mem_mib: u64,
) -> Result<ProcMemory, BenchError> {
    let spec = BootSpec {
        kernel: guest.into(),
        initrd: None,
        cmdline: BOOT_PROBE_CMDLINE.into(),
        mem_mib,
        vcpus: 1,
        timeout: Duration::from_secs(60),
        accel,
    };
    let mut cmd = command(kind, &spec, kvm)?;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(io(format!("spawn {kind}")))?;
    let (tx, rx) = channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains(IDLE_MARKER) {
                    let _ = tx.send(());
                }
            }
        });
    }
    let result = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(()) => {
            // Let the VMM settle (lazy allocations after boot) before sampling.
            std::thread::sleep(Duration::from_millis(200));
            memory::of_pid(child.id() as i32, mem_mib).ok_or(BenchError::Failed("cannot read smaps".into()))
        }
        Err(_) => Err(BenchError::Failed(format!("{kind}: no idle marker within 30 s"))),
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

pub fn run(kvm: KvmKind, guest: &Path, mem_mib: u64, runs: usize, compare_qemu: bool) -> Vec<OverheadSeries> {
    let mut plan = vec![("isola-vmm", HypervisorKind::IsolaVmm, QemuAccel::Kvm)];
    if compare_qemu {
        plan.push(("qemu-kvm", HypervisorKind::Qemu, QemuAccel::Kvm));
    }
    plan.into_iter()
        .map(|(name, kind, accel)| {
            let (mut samples, mut failures) = (Vec::new(), Vec::new());
            // The peer must boot at least once in three tries, or it cannot run here.
            if kind == HypervisorKind::Qemu {
                let first = crate::peer::first_of_tries(kvm, || {
                    measure_once(kind, accel, kvm, guest, mem_mib).map_err(|e| e.to_string())
                });
                match first {
                    Ok(m) => samples.push(m),
                    Err(why) => {
                        return OverheadSeries {
                            backend: name.into(),
                            mem_mib,
                            overhead_kib: None,
                            samples,
                            failures,
                            not_run: Some(why),
                        }
                    }
                }
            }
            for i in samples.len()..runs {
                match measure_once(kind, accel, kvm, guest, mem_mib) {
                    Ok(m) => samples.push(m),
                    Err(e) => failures.push(format!("run {i}: {e}")),
                }
            }
            let o: Vec<u64> = samples.iter().map(ProcMemory::overhead_kib).collect();
            OverheadSeries {
                backend: name.into(),
                mem_mib,
                overhead_kib: Summary::of(&o),
                samples,
                failures,
                not_run: None,
            }
        })
        .collect()
}
