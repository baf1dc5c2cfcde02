//! The Linux rootfs operations against an image's hostile symlinks: absolute,
//! relative `..`, and through a symlinked parent. Nothing may change outside the rootfs.

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::syscall::{InRoot, Linux, Syscall};

fn outside_untouched(outside: &Path) {
    assert_eq!(std::fs::read_to_string(outside.join("victim")).expect("victim"), "keep");
    let names: Vec<_> = std::fs::read_dir(outside).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, ["victim"], "nothing created outside the rootfs");
}

#[test]
fn writes_mount_points_and_links_stay_inside_the_rootfs() {
    let root = tempfile::tempdir().expect("rootfs");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("victim"), "keep").expect("victim");
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).expect("etc");
    symlink(outside.path().join("victim"), r.join("etc/hosts")).expect("absolute link");
    symlink("../../../../../../../../victim", r.join("etc/resolv.conf")).expect("relative link");
    symlink(outside.path(), r.join("mnt")).expect("symlinked parent");
    let at = |p: &str| InRoot::new(r, p).expect("path");
    let sys = Linux;

    // A link that names nothing inside the rootfs is replaced by the file.
    sys.write_in(&at("/etc/hosts"), b"127.0.0.1 localhost\n").expect("hosts");
    sys.write_in(&at("/etc/resolv.conf"), b"nameserver 10.0.0.1\n").expect("resolv.conf");
    for (f, want) in [("etc/hosts", "127.0.0.1 localhost\n"), ("etc/resolv.conf", "nameserver 10.0.0.1\n")] {
        assert!(r.join(f).symlink_metadata().expect("file").is_file(), "{f} is a plain file now");
        assert_eq!(std::fs::read_to_string(r.join(f)).expect("read"), want);
    }
    // A link to a file inside the rootfs is written through, in the rootfs.
    std::fs::write(r.join("etc/real-hostname"), "old").expect("real");
    symlink("/etc/real-hostname", r.join("etc/hostname")).expect("in-root link");
    sys.write_in(&at("/etc/hostname"), b"box\n").expect("through the link");
    assert_eq!(std::fs::read_to_string(r.join("etc/real-hostname")).expect("read"), "box\n");
    // Through a symlinked parent: fails or lands inside; never outside.
    let _ = sys.mkdir_in(&at("/mnt/sub"));
    let _ = sys.touch_in(&at("/mnt/file"));
    let _ = sys.symlink_in("/etc/shadow", &at("/mnt/link"));
    let _ = sys.write_in(&at("/mnt/victim"), b"evil");
    outside_untouched(outside.path());

    // Plain paths work as expected, and an existing file is not truncated by touch.
    sys.write_in(&at("/etc/motd"), b"hi\n").expect("write");
    sys.touch_in(&at("/etc/motd")).expect("touch");
    assert_eq!(std::fs::read_to_string(r.join("etc/motd")).expect("read"), "hi\n", "touch does not truncate");
    sys.mkdir_in(&at("/a/b/c")).expect("mkdir -p");
    assert!(r.join("a/b/c").is_dir());
    sys.symlink_in("pts/ptmx", &at("/dev/ptmx")).expect("symlink");
    assert_eq!(std::fs::read_link(r.join("dev/ptmx")).expect("link"), Path::new("pts/ptmx"));
    assert!(InRoot::new(r, "/../etc").is_err(), "`..` in a spec path is refused up front");
}
