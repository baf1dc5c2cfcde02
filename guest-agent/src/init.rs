//! Early userspace: the filesystems every later step needs.

use std::path::Path;

use nix::mount::MsFlags;

use crate::syscall::{Syscall, SyscallError};

/// (source, target, fstype, flags, data) in mount order: /dev before /dev/pts,
/// /sys before its cgroup2 child.
pub fn early_mounts() -> Vec<(&'static str, &'static str, &'static str, MsFlags, Option<&'static str>)> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    vec![
        ("proc", "/proc", "proc", nodev, None),
        ("sysfs", "/sys", "sysfs", nodev, None),
        ("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755")),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        ),
        ("tmpfs", "/run", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755")),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2", nodev, None),
    ]
}

/// Creates each mount point and mounts it; the first failure stops (and is named).
pub fn mount_early(sys: &dyn Syscall) -> Result<(), SyscallError> {
    for (source, target, fstype, flags, data) in early_mounts() {
        let target = Path::new(target);
        sys.mkdir_all(target)?;
        sys.mount(source, target, fstype, flags, data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Recording;

    #[test]
    fn parents_are_mounted_before_children() {
        let rec = Recording::default();
        mount_early(&rec).expect("mounts");
        let mounts: Vec<String> = rec.calls().into_iter().filter(|c| c.starts_with("mount")).collect();
        let pos = |t: &str| {
            mounts.iter().position(|m| m.split(' ').nth(2) == Some(t)).unwrap_or_else(|| panic!("{t} not mounted"))
        };
        assert!(pos("/dev") < pos("/dev/pts"));
        assert!(pos("/sys") < pos("/sys/fs/cgroup"));
        assert_eq!(mounts.len(), 6);
    }

    #[test]
    fn each_mount_point_is_created_first() {
        let rec = Recording::default();
        mount_early(&rec).expect("mounts");
        let calls = rec.calls();
        assert_eq!(calls[0], "mkdir /proc");
        assert!(calls[1].starts_with("mount proc /proc proc"));
    }

    #[test]
    fn a_failed_mount_stops_and_names_the_target() {
        let rec = Recording { fail_on: Some("mount devtmpfs".into()), ..Default::default() };
        let e = mount_early(&rec).expect_err("fails");
        assert!(e.to_string().contains("/dev"), "{e}");
        assert!(!rec.calls().iter().any(|c| c.contains("/dev/pts")), "stopped at the failure");
    }
}
