//! isola-vmm, our own KVM VMM: it serves the hybrid-vsock socket and the tap itself,
//! and is a vhost-user frontend to virtiofsd.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::hypervisor::{BootSpec, HypervisorError};

pub const EXE: &str = "isola-vmm";
/// "nobody": the uid of a sandbox recorded before sandboxes had their own
/// ([`crate::identity`]), and of tests that need some unprivileged user.
pub const NOBODY: u32 = 65534;

pub fn find() -> Result<PathBuf, HypervisorError> {
    super::require(EXE, " (cargo build)")
}

/// isola-vmm booting `spec`, with no time limit (a sandbox runs until stopped).
pub fn base_command(spec: &BootSpec) -> Result<Command, HypervisorError> {
    Ok(command_at(&find()?, spec))
}

/// The isola-vmm at `bin` booting `spec` (benchmarks compare two builds this way).
pub fn command_at(bin: &Path, spec: &BootSpec) -> Command {
    let mut c = Command::new(bin);
    c.arg("--kernel").arg(&spec.kernel);
    if let Some(rd) = &spec.initrd {
        c.arg("--initrd").arg(rd);
    }
    c.args(["--cmdline", &spec.cmdline, "--mem-mib", &spec.mem_mib.to_string(), "--vcpus", &spec.vcpus.to_string()]);
    c
}

/// A boot probe: the guest alone, ended by isola-vmm itself after the spec's timeout.
pub fn probe_command(spec: &BootSpec) -> Result<Command, HypervisorError> {
    Ok(probe_command_at(&find()?, spec))
}

/// A boot probe with the isola-vmm at `bin`.
pub fn probe_command_at(bin: &Path, spec: &BootSpec) -> Command {
    let mut c = command_at(bin, spec);
    c.args(["--timeout-ms", &spec.timeout.as_millis().to_string()]);
    c
}

/// What a sandbox's isola-vmm is given beyond the boot spec.
pub struct SandboxDevices<'a> {
    /// The hybrid-vsock socket the host reaches the agent on, and the guest's CID.
    pub vsock_uds: &'a Path,
    pub cid: u32,
    pub console: &'a Path,
    /// virtiofsd's vhost-user socket, when the sandbox has a share.
    pub fs_socket: Option<&'a Path>,
    /// (tap name, guest MAC): isola-vmm creates the tap, which goes when it does.
    pub tap: Option<(&'a str, &'a str)>,
    /// The sandbox's own uid and gid, which the jailed VMM becomes once everything is
    /// open: it owns no host file and shares its id with no other sandbox.
    pub uid: u32,
    /// Read-only disks (image root filesystems).
    pub disks: &'a [crate::disk::DiskAttach],
    /// A virtio-balloon (free page reporting; `balloon MIB` on the control API).
    pub balloon: bool,
}

pub fn sandbox_command(spec: &BootSpec, d: &SandboxDevices<'_>) -> Result<Command, HypervisorError> {
    let mut c = base_command(spec)?;
    devices(&mut c, d);
    Ok(c)
}

/// A sandbox's isola-vmm restored from the snapshot in `snapshot` (a template), with
/// devices of its own: memory, vCPUs and the guest's state come from the snapshot.
pub fn restore_command(snapshot: &Path, d: &SandboxDevices<'_>) -> Result<Command, HypervisorError> {
    let mut c = Command::new(find()?);
    c.arg("--restore").arg(snapshot);
    devices(&mut c, d);
    Ok(c)
}

/// The control API (`--api-sock`) and where its `snapshot` writes: a template's VMM.
pub fn snapshot_flags(c: &mut Command, api_sock: &Path, snapshot_to: &Path) {
    api_flag(c, api_sock);
    c.arg("--snapshot-to").arg(snapshot_to);
}

/// The control API alone (`--api-sock`): a sandbox's balloon target.
pub fn api_flag(c: &mut Command, api_sock: &Path) {
    c.arg("--api-sock").arg(api_sock);
}

/// One command to the control API of the isola-vmm serving `sock`: its answer when it
/// is `ok…`, else the error it gave (or why none came within `timeout`).
pub fn control(sock: &Path, command: &str, timeout: Duration) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("isola-vmm's control API at {}: {e}", sock.display());
    let mut s = UnixStream::connect(sock).map_err(fail)?;
    s.set_read_timeout(Some(timeout)).map_err(fail)?;
    s.set_write_timeout(Some(timeout)).map_err(fail)?;
    let started = Instant::now();
    writeln!(s, "{command}").map_err(fail)?;
    let mut line = String::new();
    BufReader::new(s.take(4096)).read_line(&mut line).map_err(fail)?;
    let line = line.trim().to_string();
    log::info!("isola-vmm {command}: {line} ({:?})", started.elapsed());
    if line.starts_with("ok") {
        Ok(line)
    } else if line.is_empty() {
        Err(format!("isola-vmm closed its control API during {command}"))
    } else {
        Err(line)
    }
}

fn devices(c: &mut Command, d: &SandboxDevices<'_>) {
    let id = d.uid.to_string();
    c.args(["--jail", "--uid", &id, "--gid", &id]);
    c.arg("--vsock-uds").arg(d.vsock_uds).args(["--vsock-cid", &d.cid.to_string()]);
    c.arg("--console").arg(d.console);
    if let Some(sock) = d.fs_socket {
        c.arg("--shared-memory").arg("--fs-socket").arg(sock).args(["--fs-tag", isola_protocol::SHARED_FS_TAG]);
    }
    if let Some((tap, mac)) = d.tap {
        c.args(["--tap", tap, "--mac", mac]);
    }
    for disk in d.disks {
        if disk.is_placeholder() {
            c.args(["--disk-placeholder", &disk.serial]);
        } else {
            let ro = if disk.read_only { ",ro" } else { "" };
            c.arg("--disk").arg(format!("{}{ro},id={}", disk.path.display(), disk.serial));
        }
    }
    if d.balloon {
        c.arg("--balloon");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandbox_vmm_runs_its_guest_as_the_sandboxs_own_uid_with_its_devices() {
        let d = tempfile::tempdir().expect("tmp");
        let spec = crate::hypervisor::test_spec(d.path());
        let devices = SandboxDevices {
            vsock_uds: Path::new("/run/isola/x/vsock.sock"),
            cid: 7,
            console: Path::new("/run/isola/x/console.log"),
            fs_socket: Some(Path::new("/run/isola/x/virtiofs.sock")),
            tap: Some(("isolatap", "02:00:00:00:00:01")),
            uid: 0x7000_0003,
            disks: &[crate::disk::DiskAttach {
                path: "/var/lib/isola/images/disks/k.erofs".into(),
                serial: "isola-k".into(),
                fstype: "erofs".into(),
                read_only: true,
            }],
            balloon: true,
        };
        let c = command_at(Path::new("/usr/bin/isola-vmm"), &spec);
        assert_eq!(c.get_program(), "/usr/bin/isola-vmm");
        let c = sandbox_command(&spec, &devices).expect("isola-vmm is built beside the tests (cargo build)");
        let argv: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let line = argv.join(" ");
        assert!(line.contains("--jail --uid 1879048195 --gid 1879048195"), "{line}");
        assert!(line.contains("--vsock-uds /run/isola/x/vsock.sock --vsock-cid 7"), "{line}");
        assert!(line.contains("--shared-memory --fs-socket /run/isola/x/virtiofs.sock"), "{line}");
        assert!(line.contains("--tap isolatap --mac 02:00:00:00:00:01"), "{line}");
        assert!(line.contains("--disk /var/lib/isola/images/disks/k.erofs,ro,id=isola-k"), "{line}");
        assert!(line.contains("--balloon"), "{line}");
    }

    #[test]
    fn a_restored_vmm_takes_its_devices_but_no_boot_spec() {
        let d = tempfile::tempdir().expect("tmp");
        let devices = SandboxDevices {
            vsock_uds: Path::new("/run/isola/y/vsock/vsock.sock"),
            cid: 9,
            console: Path::new("/run/isola/y/console.log"),
            fs_socket: None,
            tap: Some(("isolatap2", "02:00:00:00:00:09")),
            uid: NOBODY,
            disks: &[],
            balloon: false,
        };
        let mut c = restore_command(&d.path().join("snapshot"), &devices).expect("built beside the tests");
        snapshot_flags(&mut c, Path::new("/a.sock"), Path::new("/snap"));
        let line: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let line = line.join(" ");
        assert!(line.starts_with(&format!("--restore {}/snapshot --jail", d.path().display())), "{line}");
        assert!(line.contains("--vsock-cid 9") && line.contains("--tap isolatap2 --mac 02:00:00:00:00:09"), "{line}");
        assert!(line.ends_with("--api-sock /a.sock --snapshot-to /snap"), "{line}");
        for boot in ["--kernel", "--initrd", "--mem-mib", "--vcpus", "--cmdline", "--fs-socket", "--balloon"] {
            assert!(!line.contains(boot), "{boot} in {line}");
        }
    }
}
