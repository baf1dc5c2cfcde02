//! A container's filesystem on the host side of the pod's virtio-fs share: containerd's
//! rootfs mounts (an overlay from the snapshotter, or a bind) mounted at
//! `<shared>/<id>/rootfs`, and the spec's bind mounts bound under `<shared>/<id>/mounts/`
//! with their sources rewritten to the guest's view. Everything lives under
//! `<shared>/<id>`, so one recursive unmount undoes it, also after a crash.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use isola_sandbox::mounts;
use isola_sandbox::volume::guest_path;
use nix::mount::MsFlags;
use oci_spec::runtime::Spec;

use crate::error::TaskError;

/// One rootfs mount from containerd's Create request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootMount {
    pub typ: String,
    pub source: String,
    pub options: Vec<String>,
}

/// (flags, data) for `mount(2)`, by the one table ([`isola_protocol::mount_options`]).
pub fn split_options(options: &[String]) -> (MsFlags, String) {
    let (bits, data) = isola_protocol::mount_options::split(options);
    (MsFlags::from_bits_retain(bits), data.join(","))
}

fn is_bind(typ: &str, options: &[String]) -> bool {
    typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind")
}

/// Mounts the rootfs under the share, where [`isola_sandbox::Rootfs::InShare`] says it is.
/// `root_path` is the spec's root (used when containerd passes no mounts: `ctr run --rootfs`).
pub fn mount_rootfs(shared: &Path, id: &str, rootfs: &[RootMount], root_path: &Path) -> Result<(), TaskError> {
    let rel = Path::new(id).join("rootfs");
    let target = shared.join(&rel);
    match rootfs {
        [] => mounts::bind(root_path, shared, &rel, false)?,
        [m] if is_bind(&m.typ, &m.options) => {
            mounts::bind(Path::new(&m.source), shared, &rel, m.options.iter().any(|o| o == "ro"))?
        }
        [m] => {
            let at = isola_sandbox::beneath::mount_point(shared, &target, isola_sandbox::beneath::Kind::Dir)
                .map_err(isola_sandbox::mounts::MountError::from)?;
            let (flags, data) = split_options(&m.options);
            // Nothing in an image is setuid or a device on the host.
            let flags = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            // Overlay lowerdir lists can be long; the kernel takes one page.
            if data.len() >= 4096 {
                return Err(TaskError::InvalidArgument(format!(
                    "rootfs mount options are {} bytes; the kernel takes at most 4095",
                    data.len()
                )));
            }
            // Onto the directory just opened beneath the share, never a path a guest could swap.
            let at = PathBuf::from(format!("/proc/self/fd/{}", at.as_raw_fd()));
            nix::mount::mount(Some(m.source.as_str()), &at, Some(m.typ.as_str()), flags, Some(data.as_str())).map_err(
                |e| TaskError::Io {
                    what: format!("mounting {} rootfs at {}", m.typ, target.display()),
                    source: e.into(),
                },
            )?;
        }
        more => {
            return Err(TaskError::InvalidArgument(format!(
                "{} rootfs mounts given; isola takes one (an overlay or a bind)",
                more.len()
            )))
        }
    }
    Ok(())
}

/// The rootfs as a disk for the VM, when containerd's snapshotter made it a block file
/// (blockfile: one `ext4` mount of a file with `loop`): handed to the guest as its own
/// read-write disk, never loop-mounted on the host, whose kernel would then parse a
/// filesystem the guest wrote.
pub fn as_disk(id: &str, rootfs: &[RootMount]) -> Option<isola_sandbox::options::DiskAttach> {
    let [m] = rootfs else { return None };
    let looped = m.options.iter().any(|o| o == "loop");
    if !looped || !isola_protocol::DISK_FILESYSTEMS.contains(&m.typ.as_str()) || !m.source.starts_with('/') {
        return None;
    }
    Some(isola_sandbox::options::DiskAttach {
        path: PathBuf::from(&m.source),
        serial: format!("isola-c{}", isola_sandbox::names::short_hash(id, 6)),
        fstype: m.typ.clone(),
        read_only: m.options.iter().any(|o| o == "ro"),
    })
}

/// Whether the spec binds host paths into the container (they go through the share).
pub fn has_binds(spec: &Spec) -> bool {
    spec.mounts()
        .iter()
        .flatten()
        .any(|m| is_bind(m.typ().as_deref().unwrap_or(""), m.options().as_deref().unwrap_or(&[])))
}

/// Binds every host path the spec mounts into the share and points the mount at the
/// guest's copy. Other mounts (proc, tmpfs, devpts…) are the guest kernel's own.
pub fn share_bind_mounts(shared: &Path, id: &str, spec: &mut Spec) -> Result<(), TaskError> {
    let Some(mut list) = spec.mounts().clone() else { return Ok(()) };
    for (i, m) in list.iter_mut().enumerate() {
        let options = m.options().clone().unwrap_or_default();
        if !is_bind(m.typ().as_deref().unwrap_or(""), &options) {
            continue;
        }
        let Some(src) = m.source().clone().filter(|s| s.is_absolute()) else {
            return Err(TaskError::InvalidArgument(format!(
                "bind mount to {} needs an absolute source",
                m.destination().display()
            )));
        };
        let rel = Path::new(id).join("mounts").join(i.to_string());
        let propagation = mounts::Propagation::from_options(&options);
        mounts::bind_with(&src, shared, &rel, options.iter().any(|o| o == "ro"), propagation)?;
        m.set_source(Some(PathBuf::from(guest_path(id, &format!("mounts/{i}")))));
    }
    spec.set_mounts(Some(list));
    Ok(())
}

/// Unmounts and removes everything of container `id` under the share.
pub fn release(shared: &Path, id: &str) {
    isola_sandbox::volume::release(shared, id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    #[test]
    fn options_split_into_flags_and_data() {
        let o: Vec<String> =
            ["ro", "nosuid", "index=off", "lowerdir=/a:/b", "rbind"].iter().map(|s| s.to_string()).collect();
        let (f, d) = split_options(&o);
        assert_eq!(f, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(d, "index=off,lowerdir=/a:/b");
    }

    #[test]
    fn a_looped_block_file_is_a_disk_and_an_overlay_is_not() {
        let m = |typ: &str, source: &str, options: &[&str]| RootMount {
            typ: typ.into(),
            source: source.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        };
        let d =
            as_disk("c1", &[m("ext4", "/var/lib/containerd/blockfile/snapshots/7", &["loop", "rw"])]).expect("a disk");
        assert_eq!((d.fstype.as_str(), d.read_only), ("ext4", false));
        assert!(d.serial.len() <= 20 && d.serial.starts_with("isola-c"), "{}", d.serial);
        assert_ne!(as_disk("c2", &[m("ext4", "/f", &["loop"])]).expect("disk").serial, d.serial, "per container");
        assert!(as_disk("c1", &[m("ext4", "/f", &["loop", "ro"])]).expect("disk").read_only);
        assert!(as_disk("c1", &[m("overlay", "overlay", &["lowerdir=/a"])]).is_none());
        assert!(as_disk("c1", &[m("xfs", "/f", &["loop"])]).is_none(), "a filesystem the guest does not take");
        assert!(as_disk("c1", &[m("ext4", "relative", &["loop"])]).is_none());
        assert!(as_disk("c1", &[m("ext4", "/dev/sda1", &[])]).is_none(), "a device, not a block file");
    }

    #[test]
    fn several_rootfs_mounts_are_refused_by_name() {
        let d = tempfile::tempdir().expect("tmp");
        let m = RootMount { typ: "overlay".into(), source: "overlay".into(), options: vec![] };
        let e = mount_rootfs(d.path(), "c1", &[m.clone(), m], Path::new("/x")).expect_err("two");
        assert!(e.to_string().contains("2 rootfs mounts given"), "{e}");
    }

    #[test]
    fn a_relative_bind_source_is_an_error() {
        let d = tempfile::tempdir().expect("tmp");
        let mut spec = Spec::default();
        let m = MountBuilder::default()
            .destination("/data")
            .typ("bind")
            .source("relative/dir")
            .options(vec!["rbind".to_string()])
            .build()
            .expect("mount");
        spec.set_mounts(Some(vec![m]));
        let e = share_bind_mounts(d.path(), "c1", &mut spec).expect_err("relative");
        assert!(e.to_string().contains("/data needs an absolute source"), "{e}");
    }

    /// As root: a spec bind of a host file and a directory is bound into the share, the
    /// spec points at the guest path, and release leaves the sources untouched.
    #[test]
    fn spec_binds_go_through_the_share_and_release_undoes_them() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (does not skip)");
        let shared = tempfile::tempdir().expect("shared");
        let src = tempfile::tempdir().expect("src");
        std::fs::write(src.path().join("resolv.conf"), "nameserver 10.0.0.1\n").expect("write");
        let mut spec = Spec::default();
        let mut list = spec.mounts().clone().unwrap_or_default();
        let proc_mounts = list.len();
        for (dst, s) in [("/etc/resolv.conf", src.path().join("resolv.conf")), ("/data", src.path().to_path_buf())] {
            list.push(
                MountBuilder::default()
                    .destination(dst)
                    .typ("bind")
                    .source(s)
                    .options(vec!["rbind".to_string(), "ro".to_string()])
                    .build()
                    .expect("mount"),
            );
        }
        spec.set_mounts(Some(list));
        share_bind_mounts(shared.path(), "c1", &mut spec).expect("share");
        let m = spec.mounts().clone().expect("mounts");
        let guest_src = m[proc_mounts].source().clone().expect("src");
        assert_eq!(guest_src, PathBuf::from(format!("{}/c1/mounts/{proc_mounts}", isola_protocol::SHARED_DIR)));
        let host = shared.path().join(format!("c1/mounts/{proc_mounts}"));
        assert_eq!(std::fs::read_to_string(&host).expect("through the bind"), "nameserver 10.0.0.1\n");
        assert!(mounts::mounts_under(shared.path()).len() >= 2);
        release(shared.path(), "c1");
        assert!(mounts::mounts_under(shared.path()).is_empty());
        assert!(!shared.path().join("c1").exists());
        assert!(src.path().join("resolv.conf").exists(), "source kept");
    }
}
