//! Whether a peer can run on this host at all. QEMU with `-accel kvm` on some PVM
//! hosts aborts at start (`kvm_buf_set_msrs: Assertion … failed`) before the guest
//! runs: that is the host's limit, not a result, so such a peer is reported as not
//! run, with QEMU's own words, instead of counted as failed runs.

use std::path::Path;
use std::time::Duration;

use isola_sandbox::{boot, BootSpec, HypervisorKind, KvmKind, QemuAccel};

/// Tries a few boots of `guest` under QEMU with KVM; the reason it cannot run, if none
/// got as far as the guest's marker.
pub fn qemu_kvm_unusable(kvm: KvmKind, guest: &Path, marker: &str) -> Option<String> {
    if kvm == KvmKind::Missing {
        return Some("no /dev/kvm".into());
    }
    let spec = BootSpec {
        kernel: guest.into(),
        initrd: None,
        cmdline: isola_sandbox::hypervisor::BOOT_PROBE_CMDLINE.into(),
        mem_mib: 128,
        vcpus: 1,
        timeout: Duration::from_secs(20),
        accel: QemuAccel::Kvm,
    };
    let once = || match boot(HypervisorKind::Qemu, kvm, &spec, marker, None) {
        Ok(r) if r.success => Ok(()),
        Ok(r) => Err(r.diagnostics.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string()),
        Err(e) => Err(e.to_string()),
    };
    first_of_tries(kvm, once).err()
}

/// The first success of `attempt` in [`TRIES`] tries, or why QEMU with KVM cannot run
/// here (its last failure).
pub fn first_of_tries<T>(kvm: KvmKind, mut attempt: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let mut last = String::new();
    for _ in 0..TRIES {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
    }
    Err(format!("QEMU with KVM cannot boot a guest on this host ({}): {last}", kvm.describe()))
}

/// Boots a peer gets before it is reported as not run.
pub const TRIES: usize = 3;
