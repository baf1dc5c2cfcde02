//! Helpers shared by the end-to-end tests: where the real guest lives, and loud
//! failures when a prerequisite is missing (these tests never skip).

pub mod chaos;
pub mod containerd;
pub mod cri;
pub mod docker;
pub mod podman;
pub use isola_sandbox::inventory as leaks;
pub mod outside;
pub mod registry;

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

/// A sandbox `id` of the real guest (256 MiB, one vCPU) on the backend this host
/// picks, under the default state root, tied to the test, with no network: tests
/// change what they need with `..`.
pub fn sandbox_options(id: &str) -> isola_sandbox::sandbox::SandboxOptions {
    let (kernel, initrd) = linux_guest();
    let kvm = isola_sandbox::detect_kvm();
    let boot = BootSpec {
        kernel,
        initrd: Some(initrd),
        cmdline: isola_sandbox::hypervisor::DEFAULT_CMDLINE.into(),
        mem_mib: 256,
        vcpus: 1,
        timeout: Duration::from_secs(60),
        accel: QemuAccel::Auto,
    };
    isola_sandbox::sandbox::SandboxOptions::new(id, boot, isola_sandbox::choose(None, kvm), kvm)
}

/// A test guest built from vmm/guests into the target directory.
pub fn test_guest(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/isola/guests");
    isola_testguests::build(name, &dir).unwrap_or_else(|e| panic!("building test guest {name}: {e}"))
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

/// The busybox rootfs installed by scripts/setup.sh.
pub fn busybox_rootfs() -> PathBuf {
    let p = PathBuf::from("/var/lib/isola/busybox-rootfs");
    assert!(
        p.join("bin/busybox").is_file(),
        "{} is missing: run scripts/setup.sh (end-to-end tests do not skip)",
        p.display()
    );
    p
}

/// Runs the `isola` CLI; returns (stdout, stderr, exit code).
pub fn isola(args: &[&str], stdin: Option<&str>) -> (String, String, i32) {
    isola_env(args, stdin, &[])
}

/// [`isola`] with extra environment variables.
pub fn isola_env(args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> (String, String, i32) {
    use std::io::Write;
    let bin = require_binary("isola", "cargo build");
    let mut child = std::process::Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run isola");
    if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(input.as_bytes()).expect("stdin");
    }
    let out = child.wait_with_output().expect("isola output");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// Pids of processes whose command line mentions `needle` (leak checks).
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle) && pid != std::process::id() as i32 {
            v.push(pid);
        }
    }
    v
}
