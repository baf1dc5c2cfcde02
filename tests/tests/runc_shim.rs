//! containerd's own runc shim (`io.containerd.runc.v2`) with `isola-runtime` as its
//! runc binary: the `BinaryName` registration, on Debian's containerd 1.6 (containerd
//! 2.3 here has no runc shim of its own version).

use isola_e2e::containerd::{Containerd, IMAGE};

#[test]
fn the_runc_shim_runs_isola_runtime_as_its_binary() {
    // containerd's own runc shim with `BinaryName` (here ctr's --runc-binary): every
    // container in a microVM without our shim.
    let c = Containerd::start();
    c.import_image("default");
    let rt = isola_e2e::docker::runtime_binary();
    let rt = rt.to_str().expect("path");
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        rt,
        IMAGE,
        "rs1",
        "sh",
        "-c",
        "cat /etc/motd; cat /proc/sys/kernel/osrelease; exit 5",
    ]);
    assert_eq!(o.code, 5, "{}{}", o.stdout, o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"hello from the image"), "{}", o.stdout);
    assert!(lines.get(1).is_some_and(|k| *k != host.trim()), "the guest's kernel: {}", o.stdout);
    let keepers = isola_e2e::containerd::pids_with_args(&["__isola keeper", "rs1"]);
    assert!(keepers.is_empty(), "keepers left: {keepers:?}");
    c.assert_nothing_left();
}
