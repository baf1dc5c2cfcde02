//! Images as disks end to end: `isola run IMAGE` gives the guest the image's read-only
//! erofs disk (virtio-blk, QEMU here) under an overlay of the container's own, with no
//! virtiofsd unless a volume asks for one; one disk per image, built once.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use isola_e2e::registry::{build_layout, Registry};
use isola_e2e::{isola_env, processes_mentioning};

struct Pulled {
    _reg: Registry,
    store: tempfile::TempDir,
    reference: String,
}

fn pulled(tag: &str) -> Pulled {
    let reg = Registry::start();
    let layout = tempfile::tempdir().expect("layout");
    build_layout(layout.path(), tag, "hello from the disk");
    reg.push(layout.path(), tag, "test/disk");
    let store = tempfile::tempdir().expect("store");
    let reference = format!("{}/test/disk:{tag}", reg.addr);
    let (_, err, code) = isola_env(&["pull", &reference], None, &[("ISOLA_IMAGE_DIR", store.path())]);
    assert_eq!(code, 0, "{err}");
    Pulled { _reg: reg, store, reference }
}

fn disks(store: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(store.join("disks")) else { return vec![] };
    rd.flatten().map(|e| e.path()).collect()
}

/// The container's overlay mount, as the container sees it.
const ROOT_MOUNT: &str = "grep ' / / ' /proc/self/mountinfo";

#[test]
fn an_image_runs_from_its_disk_built_once_with_writes_kept_to_the_container() {
    let p = pulled("d1");
    let env = [("ISOLA_IMAGE_DIR", p.store.path())];
    let built = disks(p.store.path());
    assert_eq!(built.len(), 1, "`isola pull` built the image's disk: {built:?}");
    let before = std::fs::metadata(&built[0]).expect("disk");
    let bytes_before = std::fs::read(&built[0]).expect("disk bytes");

    // The image's config applies; the rootfs is an overlay over the disk's mount.
    let (out, err, code) = isola_env(&["run", "--name", "e2e-disk1", &p.reference], None, &env);
    assert_eq!((out.as_str(), code), ("hello from the disk\nfrom-image-config\n", 0), "{err}");
    let script = format!(
        "{ROOT_MOUNT}; test ! -e /etc/gone && echo whiteout-honoured; echo mine > /etc/motd; cat /etc/motd; exit 3"
    );
    let (out, err, code) = isola_env(&["run", "--name", "e2e-disk2", &p.reference, "sh", "-c", &script], None, &env);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("lowerdir=/run/isola/containers/e2e-disk2/image"), "root over the disk's mount: {out}");
    assert!(out.contains("whiteout-honoured\nmine\n"), "{out}");
    // The next container of the image sees the image, not the last one's write.
    let (out, err, code) = isola_env(&["run", "--name", "e2e-disk3", &p.reference, "cat", "/etc/motd"], None, &env);
    assert_eq!((out.as_str(), code), ("hello from the disk\n", 0), "{err}");

    // Nothing rebuilt, nothing written: the same file, the same bytes.
    let after = std::fs::metadata(&built[0]).expect("disk");
    assert_eq!((after.ino(), after.mtime()), (before.ino(), before.mtime()), "built once");
    assert_eq!(std::fs::read(&built[0]).expect("disk bytes"), bytes_before, "the guest never wrote it");
    assert_eq!(disks(p.store.path()).len(), 1);
}

/// With the image on a disk and no volume there is no virtiofsd; a volume brings one
/// (and works beside the disk); `--image-fs share` keeps the old path.
#[test]
fn virtiofsd_runs_only_for_what_is_shared() {
    let p = pulled("d2");
    let env = [("ISOLA_IMAGE_DIR", p.store.path())];
    let vol = tempfile::tempdir().expect("volume");
    std::fs::write(vol.path().join("data"), "from the host\n").expect("data");
    let count_virtiofsd = |name: &str| {
        processes_mentioning(&format!("/{name}/"))
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("virtiofsd"))
            })
            .count()
    };
    for (name, extra, wants_fs) in [
        ("e2e-disk-nofs", vec![], false),
        ("e2e-disk-vol", vec!["-v".to_string(), format!("{}:/data", vol.path().display())], true),
        ("e2e-disk-share", vec!["--image-fs".to_string(), "share".to_string()], true),
    ] {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(extra.iter().map(String::as_str));
        args.extend([p.reference.as_str(), "busybox", "sleep", "60"]);
        let (_, err, code) = isola_env(&args, None, &env);
        assert_eq!(code, 0, "{name}: {err}");
        let n = count_virtiofsd(name);
        let (mounts, err, code) = isola_env(&["exec", name, "--", "sh", "-c", ROOT_MOUNT], None, &env);
        let data = isola_env(&["exec", name, "--", "cat", "/data/data"], None, &env).0;
        let (_, rm_err, rm) = isola_env(&["rm", "-f", name], None, &env);
        assert_eq!(rm, 0, "{rm_err}");
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(n > 0, wants_fs, "{name}: {n} virtiofsd");
        let on_disk = mounts.contains(&format!("lowerdir=/run/isola/containers/{name}/image"));
        assert_eq!(on_disk, name != "e2e-disk-share", "{name}: {mounts}");
        if name == "e2e-disk-vol" {
            assert_eq!(data, "from the host\n", "the volume beside the disk");
        }
        assert_eq!(count_virtiofsd(name), 0, "{name}: virtiofsd gone with the sandbox");
    }
}

/// An image with more files than the host allows is refused as a disk, with nothing
/// left in the store's disks or temporaries, and nothing started.
#[test]
fn an_image_over_the_inode_limit_is_refused_and_leaves_nothing() {
    let p = pulled("d3");
    for d in disks(p.store.path()) {
        std::fs::remove_file(d).expect("forget the built disk");
    }
    let limit = Path::new("5");
    let env = [("ISOLA_IMAGE_DIR", p.store.path()), ("ISOLA_MAX_IMAGE_INODES", limit)];
    let (out, err, code) = isola_env(&["run", "--name", "e2e-disk-big", &p.reference, "true"], None, &env);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("more than 5 files"), "{err}");
    assert!(disks(p.store.path()).is_empty());
    assert!(std::fs::read_dir(p.store.path().join("tmp")).expect("tmp").next().is_none(), "no temporaries");
    assert!(processes_mentioning("e2e-disk-big").is_empty(), "nothing started");
}
