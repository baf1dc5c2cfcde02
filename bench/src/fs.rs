//! `isola bench fs`: sequential write/read and small-file metadata throughput in a
//! container on a virtio-fs volume, against the same script on the host directory it
//! shares, in the same run. busybox does the work on both sides, so only the path
//! differs (plus, on a TCG host, the emulated CPU).

use std::process::Command;

use isola_sandbox::volume::Volume;
use isola_sandbox::StdioStream;

use crate::container::ContainerBenchConfig;
use crate::error::{io, BenchError};

/// What the script does: 64 MiB written with fsync and read back with dd, then 500
/// files created, listed and removed; busybox `time` reports each (10 ms resolution).
pub const SCRIPT: &str = r#"D=$1
time sh -c 'dd if=/dev/zero of=$0/seq bs=1M count=64 conv=fsync 2>/dev/null' $D
time sh -c 'dd if=$0/seq of=/dev/null bs=1M 2>/dev/null' $D
rm -f $D/seq
time sh -c 'mkdir $0/small; i=0; while [ $i -lt 500 ]; do echo x > $0/small/$i; i=$((i+1)); done; ls -l $0/small > /dev/null; rm -r $0/small' $D
"#;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct FsResult {
    pub write_mb_s: f64,
    pub read_mb_s: f64,
    /// Files created, listed and removed per second.
    pub small_files_per_s: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FsBench {
    pub backend: String,
    pub guest: FsResult,
    pub host: FsResult,
}

/// Every "real" line of busybox `time` ("real\t0m 1.23s"), in seconds.
fn real_times(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| {
            let t = l.trim_start().strip_prefix("real")?.trim();
            let (m, s) = t.split_once('m')?;
            Some(m.trim().parse::<f64>().ok()? * 60.0 + s.trim().trim_end_matches('s').parse::<f64>().ok()?)
        })
        .collect()
}

pub fn parse(out: &str) -> Result<FsResult, BenchError> {
    let [w, r, small] = real_times(out)[..] else {
        return Err(BenchError::Failed(format!("expected three timings in {out:?}")));
    };
    // A 10 ms clock: never divide by less than one tick.
    let tick = |t: f64| t.max(0.01);
    Ok(FsResult { write_mb_s: 64.0 / tick(w), read_mb_s: 64.0 / tick(r), small_files_per_s: 500.0 / tick(small) })
}

pub fn run(cfg: &ContainerBenchConfig) -> Result<FsBench, BenchError> {
    let shared = tempfile::tempdir().map_err(io("temporary directory"))?;
    let host_dir = tempfile::tempdir().map_err(io("temporary directory"))?;
    let host = parse(&host_script(SCRIPT, host_dir.path())?)?;

    let mut sb = crate::container::sandbox(cfg, "fs")?;
    let result = (|| {
        let vol = Volume { host: shared.path().into(), guest: "/data".into(), readonly: false };
        let c = crate::container::container(&sb, cfg, &["sh", "-c", SCRIPT, "bench", "/data"], &[vol])?;
        parse(&script_output(&c)?)
    })();
    sb.stop();
    Ok(FsBench { backend: cfg.hypervisor.to_string(), guest: result?, host })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_outputs_parse() {
        let out = "real\t0m 0.50s\nuser\t0m 0.00s\nsys\t0m 0.10s\n\
                   real\t0m 0.25s\nuser\t0m 0.00s\nsys\t0m 0.10s\n\
                   real\t0m 2.00s\nuser\t0m 0.10s\nsys\t0m 0.20s\n";
        let r = parse(out).expect("parse");
        assert_eq!((r.write_mb_s, r.read_mb_s, r.small_files_per_s), (128.0, 256.0, 250.0));
        assert!(parse("nothing").is_err());
    }

    #[test]
    fn rootfs_outputs_parse_per_entry_and_file() {
        let out = "real\t0m 0.50s\nuser\t0m 0.00s\nreal\t0m 1.00s\nreal\t0m 2.00s\n";
        let r = parse_rootfs(out).expect("parse");
        let (dirs, files) = TREE;
        assert_eq!(r.read_mb_s, BIG_MIB as f64 * 2.0);
        assert_eq!(r.walk_entries_per_s, (dirs * files + dirs + 1) as f64);
        assert_eq!(r.tar_files_per_s, (dirs * files) as f64 / 2.0);
        assert!(parse_rootfs("real\t0m 0.50s\n").is_err());
    }
}

/// The root filesystem read three ways in one run: from an image's erofs disk
/// (virtio-blk), from the same tree over virtio-fs, and on the host.
pub const ROOTFS_SCRIPT: &str = r#"D=$1
time sh -c 'dd if=$0/big of=/dev/null bs=1M 2>/dev/null' $D
time sh -c 'find $0/tree > /dev/null' $D
time sh -c 'tar cf - $0/tree > /dev/null' $D
"#;
/// The tree's shape: directories × files, each file a few hundred bytes.
pub const TREE: (usize, usize) = (40, 100);
pub const BIG_MIB: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RootfsResult {
    pub read_mb_s: f64,
    /// Entries walked per second (`find`).
    pub walk_entries_per_s: f64,
    /// Files archived per second (`tar` of the tree: metadata and small reads).
    pub tar_files_per_s: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RootfsBench {
    pub backend: String,
    pub disk: RootfsResult,
    pub share: RootfsResult,
    pub host: RootfsResult,
    /// The erofs image: build time and size.
    pub build_ms: u64,
    pub disk_bytes: u64,
}

pub fn parse_rootfs(out: &str) -> Result<RootfsResult, BenchError> {
    let [r, walk, tar] = real_times(out)[..] else {
        return Err(BenchError::Failed(format!("expected three timings in {out:?}")));
    };
    let tick = |t: f64| t.max(0.01);
    let (dirs, files) = TREE;
    let entries = (dirs * files + dirs + 1) as f64;
    Ok(RootfsResult {
        read_mb_s: BIG_MIB as f64 / tick(r),
        walk_entries_per_s: entries / tick(walk),
        tar_files_per_s: (dirs * files) as f64 / tick(tar),
    })
}

/// The bench rootfs plus `/bench/big` and `/bench/tree` in a new directory.
fn bench_tree(rootfs: &std::path::Path, dir: &std::path::Path) -> Result<(), BenchError> {
    let st = Command::new("cp").arg("-a").arg(format!("{}/.", rootfs.display())).arg(dir).status();
    if !st.map_err(io("cp"))?.success() {
        return Err(BenchError::Failed(format!("copying {}", rootfs.display())));
    }
    let b = dir.join("bench");
    let mut big = vec![0u8; BIG_MIB << 20];
    // Not zeros: nothing on the way may shortcut them.
    for (i, x) in big.iter_mut().enumerate() {
        *x = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
    }
    std::fs::create_dir_all(&b).map_err(io("bench dir"))?;
    std::fs::write(b.join("big"), &big).map_err(io("big file"))?;
    let (dirs, files) = TREE;
    for d in 0..dirs {
        let sub = b.join("tree").join(format!("d{d}"));
        std::fs::create_dir_all(&sub).map_err(io("tree"))?;
        for f in 0..files {
            std::fs::write(sub.join(format!("f{f}")), format!("{d}/{f} {}\n", "x".repeat(200))).map_err(io("tree"))?;
        }
    }
    Ok(())
}

/// `script` run by busybox on the host on `dir`: what it printed.
fn host_script(script: &str, dir: &std::path::Path) -> Result<String, BenchError> {
    let out = Command::new("busybox")
        .args(["sh", "-c", script, "bench"])
        .arg(dir)
        .output()
        .map_err(io("busybox on the host"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// `ROOTFS_SCRIPT` in a container of `sb` whose root is `root`.
fn guest_rootfs_run(
    sb: &isola_sandbox::sandbox::Sandbox,
    id: &str,
    root: isola_sandbox::Rootfs<'_>,
) -> Result<RootfsResult, BenchError> {
    let args = ["sh", "-c", ROOTFS_SCRIPT, "bench", "/bench"].map(String::from).to_vec();
    let spec = isola_sandbox::spec::spec(&isola_sandbox::spec::ContainerOptions { args, ..Default::default() })?;
    let c = sb.create_container(id, spec, root, &[])?;
    parse_rootfs(&script_output(&c)?)
}

/// Starts `c` and returns what it printed (stdout, then stderr, where busybox `time`
/// writes); a script that fails is an error with its stderr.
fn script_output(c: &isola_sandbox::Container) -> Result<String, BenchError> {
    let mut out = c.init().stream(StdioStream::Stdout)?;
    let mut err = c.init().stream(StdioStream::Stderr)?;
    c.start()?;
    let (mut o, mut e) = (String::new(), String::new());
    std::io::Read::read_to_string(&mut out, &mut o).map_err(io("container stdout"))?;
    std::io::Read::read_to_string(&mut err, &mut e).map_err(io("container stderr"))?;
    match c.wait()? {
        status if status.code == 0 => Ok(o + &e),
        status => Err(BenchError::Failed(format!("the bench script ended with {status:?}: {e}"))),
    }
}

/// One sandbox with both paths: the tree as an erofs disk and over virtio-fs; a
/// container on each, one after the other, and the host.
pub fn run_rootfs(cfg: &ContainerBenchConfig) -> Result<RootfsBench, BenchError> {
    let work = tempfile::tempdir().map_err(io("temporary directory"))?;
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).map_err(io("tree dir"))?;
    bench_tree(&cfg.rootfs, &tree)?;
    let image = work.path().join("rootfs.erofs");
    let tree_cfg = ContainerBenchConfig { rootfs: tree.clone(), ..cfg.clone() };
    let (disk_cfg, build_ms) = crate::container::with_disk(&tree_cfg, &image)?;
    let disk_bytes = std::fs::metadata(&image).map_err(io("disk image"))?.len();
    let host = parse_rootfs(&host_script(ROOTFS_SCRIPT, &tree.join("bench"))?)?;
    // The disk, and a share too: the same tree goes both ways in one sandbox.
    let opts =
        isola_sandbox::sandbox::SandboxOptions { shared_fs: true, ..crate::container::options(&disk_cfg, "fs-root") };
    let d = disk_cfg.disk.as_ref().ok_or(BenchError::Failed("no disk configured".into()))?;
    let mut sb = isola_sandbox::sandbox::Sandbox::start(&opts)?;
    let result = (|| -> Result<(RootfsResult, RootfsResult), BenchError> {
        let on_disk = isola_sandbox::Rootfs::Disk { serial: &d.serial, fstype: &d.fstype, in_place: false };
        let disk = guest_rootfs_run(&sb, "on-disk", on_disk)?;
        let share = guest_rootfs_run(&sb, "on-share", isola_sandbox::Rootfs::Dir(&tree))?;
        Ok((disk, share))
    })();
    sb.stop();
    let (disk, share) = result?;
    Ok(RootfsBench { backend: cfg.hypervisor.to_string(), disk, share, host, build_ms, disk_bytes })
}
