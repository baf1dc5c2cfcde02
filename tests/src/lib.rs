//! Helpers shared by the end-to-end tests: where the real guest lives, and loud
//! failures when a prerequisite is missing (these tests never skip).

use std::path::{Path, PathBuf};
use std::time::Duration;

use isola_sandbox::{assets, BootSpec, QemuAccel};

/// The guest kernel and initramfs built by `scripts/setup.sh`.
pub fn linux_guest() -> (PathBuf, PathBuf) {
    let (k, rd) = (assets::default_kernel(), assets::default_initrd());
    for p in [&k, &rd] {
        assert!(p.is_file(), "{} is missing: run scripts/setup.sh (end-to-end tests do not skip)", p.display());
    }
    (k, rd)
}

/// A test guest built from vmm/guests into the target directory.
pub fn test_guest(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/isola/guests");
    isola_vmm::testguest::build(name, &dir).unwrap_or_else(|e| panic!("building test guest {name}: {e}"))
}

pub fn linux_spec(timeout: Duration) -> BootSpec {
    let (kernel, initrd) = linux_guest();
    BootSpec {
        kernel,
        initrd: Some(initrd),
        cmdline: isola_sandbox::hypervisor::BOOT_PROBE_CMDLINE.into(),
        mem_mib: 256,
        vcpus: 1,
        timeout,
        accel: QemuAccel::Auto,
    }
}

/// Fails loudly unless `name` can be found.
pub fn require_binary(name: &str, hint: &str) -> PathBuf {
    assets::find_binary(name).unwrap_or_else(|| panic!("{name} not found ({hint}); end-to-end tests do not skip"))
}
