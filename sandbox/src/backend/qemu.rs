//! QEMU `-M microvm`, the second backend (KVM where it is hardware-backed, TCG
//! elsewhere): its machine arguments, and the vhost-user devices of a sandbox.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::host::KvmKind;
use crate::hypervisor::{BootSpec, HypervisorError, QemuAccel};

pub const EXE: &str = "qemu-system-x86_64";

pub fn find() -> Result<PathBuf, HypervisorError> {
    super::require(EXE, " (apt-get install qemu-system-x86)")
}

/// A boot probe: the guest alone, its console on stdout.
pub fn probe_command(spec: &BootSpec, kvm: KvmKind) -> Result<Command, HypervisorError> {
    let mut c = Command::new(find()?);
    c.args(args(spec, kvm, false));
    Ok(c)
}

/// What a sandbox's QEMU is given beyond the boot spec.
pub struct SandboxDevices<'a> {
    /// vhost-device-vsock's vhost-user socket.
    pub vhost_vsock: &'a Path,
    /// virtiofsd's vhost-user socket, when the sandbox has a share.
    pub fs_socket: Option<&'a Path>,
    /// (tap name, guest MAC): QEMU creates the tap and it vanishes with QEMU.
    pub tap: Option<(&'a str, &'a str)>,
    /// Read-only disks (image root filesystems), opened by QEMU before it drops to the
    /// sandbox's uid.
    pub disks: &'a [crate::disk::DiskAttach],
    /// A virtio-balloon with free page reporting; its target is set over QMP.
    pub balloon: bool,
}

/// The balloon QEMU gives a sandbox: free pages reported by the guest are dropped from
/// QEMU's mapping of guest RAM (punched out of the memfd when the RAM is shared), and
/// the guest may take ballooned pages back rather than hit the OOM killer.
pub const BALLOON_DEVICE: &str = "virtio-balloon-device,id=balloon0,free-page-reporting=on,deflate-on-oom=on";

/// QEMU's own seccomp filter for a sandbox: no obsolete syscalls, no fork or exec, no
/// scheduler or resource changes. A guest that takes over QEMU is held by it. set*uid
/// stays allowed because QEMU installs the filter before `-runas` drops it to the
/// sandbox's own uid; once every uid is non-root its capabilities are gone, so those
/// calls can no longer raise anything (and no_new_privs is set either way).
pub const SANDBOX_SECCOMP: &str = "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny";

/// The capabilities QEMU starts with (its bounding set): opening the sockets it is
/// given (dac_override), creating its tap (net_admin), and `-chroot`/`-runas`
/// (sys_chroot, setuid, setgid). After `-runas` it holds none.
pub const SANDBOX_CAPS: &[u32] = &[1, 6, 7, 12, 18];

/// The sandbox's QEMU; its console is its stdout. It chroots into `jail` (an empty
/// directory) and becomes the sandbox's own `uid` (and gid) just before the guest
/// starts: it owns no host file and shares its id with no other sandbox.
pub fn sandbox_command(
    spec: &BootSpec,
    kvm: KvmKind,
    d: &SandboxDevices<'_>,
    jail: &Path,
    uid: u32,
) -> Result<Command, HypervisorError> {
    let mut q = Command::new(find()?);
    q.args(args(spec, kvm, true));
    q.args(["-sandbox", SANDBOX_SECCOMP, "-runas", &format!("{uid}:{uid}")]);
    // Threads named for what they run (`CPU 0/TCG`): how a benchmark tells the guest's
    // CPU time from QEMU's own.
    q.args(["-name", "isola,debug-threads=on"]);
    q.arg("-chroot").arg(jail);
    q.arg("-chardev").arg(format!("socket,id=vsock,path={}", d.vhost_vsock.display()));
    q.arg("-device").arg("vhost-user-vsock-device,chardev=vsock");
    if let Some(sock) = d.fs_socket {
        q.arg("-chardev").arg(format!("socket,id=fs,path={}", sock.display()));
        q.arg("-device").arg(format!("vhost-user-fs-device,chardev=fs,tag={}", isola_protocol::SHARED_FS_TAG));
    }
    if let Some((tap, mac)) = d.tap {
        q.arg("-netdev").arg(format!("tap,id=net0,ifname={tap},script=no,downscript=no"));
        q.arg("-device").arg(format!("virtio-net-device,netdev=net0,mac={mac}"));
    }
    // (Placeholders are for isola-vmm's templates; QEMU restores none.)
    for (i, disk) in d.disks.iter().filter(|d| !d.is_placeholder()).enumerate() {
        // QEMU's option syntax: a comma in a value is written twice.
        let path = disk.path.display().to_string().replace(',', ",,");
        let ro = if disk.read_only { ",readonly=on" } else { "" };
        q.arg("-drive").arg(format!("file={path},if=none,id=disk{i},format=raw{ro}"));
        q.arg("-device").arg(format!("virtio-blk-device,drive=disk{i},serial={}", disk.serial));
    }
    if d.balloon {
        q.arg("-device").arg(BALLOON_DEVICE);
    }
    Ok(q)
}

/// QEMU's microvm machine with an i8042 so the guest's reset ends QEMU at once (without
/// it Linux spends ~1.5 s in reboot fallbacks); no ACPI (with it, guest userspace console
/// output stalled here), the legacy PIT and RTC kept (without them TCG boots hung), no
/// default devices. `shared_memory` backs guest RAM with a shared memfd, which
/// vhost-user daemons need to map the rings.
pub fn args(spec: &BootSpec, kvm: KvmKind, shared_memory: bool) -> Vec<String> {
    let use_kvm = match spec.accel {
        QemuAccel::Kvm => true,
        QemuAccel::Tcg => false,
        QemuAccel::Auto => kvm == KvmKind::Hardware,
    };
    let (accel, cpu) = if use_kvm { ("kvm", "host") } else { ("tcg", "max") };
    let machine = if shared_memory {
        "microvm,acpi=off,isa-serial=on,memory-backend=mem"
    } else {
        "microvm,acpi=off,isa-serial=on"
    };
    let mut a: Vec<String> = [
        "-M",
        machine,
        "-accel",
        accel,
        "-cpu",
        cpu,
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-serial",
        "stdio",
        "-device",
        "i8042",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(["-m".into(), format!("{}M", spec.mem_mib), "-smp".into(), spec.vcpus.to_string()]);
    if shared_memory {
        a.extend(["-object".into(), format!("memory-backend-memfd,id=mem,size={}M,share=on", spec.mem_mib)]);
    }
    a.extend(["-kernel".into(), spec.kernel.display().to_string()]);
    if let Some(rd) = &spec.initrd {
        a.extend(["-initrd".into(), rd.display().to_string()]);
    }
    a.extend(["-append".into(), spec.cmdline.clone()]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::test_spec as spec;

    #[test]
    fn qemu_uses_tcg_unless_kvm_is_hardware() {
        let d = tempfile::tempdir().expect("tmp");
        let s = spec(d.path());
        let tcg = args(&s, KvmKind::Pvm, false).join(" ");
        assert!(tcg.contains("-accel tcg -cpu max"), "{tcg}");
        assert!(tcg.contains("-m 128M -smp 2"), "{tcg}");
        assert!(tcg.contains("-append console=ttyS0"), "{tcg}");
        let kvm = args(&s, KvmKind::Hardware, false).join(" ");
        assert!(kvm.contains("-accel kvm -cpu host"), "{kvm}");
        let forced = BootSpec { accel: QemuAccel::Kvm, ..s.clone() };
        assert!(args(&forced, KvmKind::Pvm, false).join(" ").contains("-accel kvm"));
        let forced = BootSpec { accel: QemuAccel::Tcg, ..s };
        assert!(args(&forced, KvmKind::Hardware, false).join(" ").contains("-accel tcg"));
        let shared = args(&forced, KvmKind::Pvm, true).join(" ");
        assert!(shared.contains("isa-serial=on,memory-backend=mem"), "{shared}");
        assert!(shared.contains("memory-backend-memfd,id=mem,size=128M,share=on"), "{shared}");
    }
}
