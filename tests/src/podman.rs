//! podman (Debian's 4.3) with `--runtime isola-runtime`: its own storage root and run
//! root under a temporary directory, cgroupfs, file events (no systemd here), and the
//! busybox image imported from the same offline rootfs archive as Docker's. The
//! runtime keeps its state in its default root (podman passes `--runtime-flag` to
//! some calls only, never to `delete`), so the leak checks look for this fixture's
//! containers by id.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::containerd::{kill9, pids_with_args, Out};
use crate::docker::{output, rootfs_archive, runtime_binary, IMAGE};

pub struct Podman {
    pub dir: tempfile::TempDir,
    runtime: PathBuf,
    bin: PathBuf,
}

impl Podman {
    pub fn start() -> Self {
        let bin = crate::require_binary("podman", "apt-get install podman");
        let dir = tempfile::Builder::new().prefix("isola-podman-").tempdir().expect("tmp");
        let p = Podman { dir, runtime: runtime_binary(), bin };
        let archive = rootfs_archive(p.dir.path());
        let out = p.podman(&["import", archive.to_str().expect("path"), IMAGE]);
        assert_eq!(out.code, 0, "podman import: {}{}", out.stdout, out.stderr);
        p
    }

    pub fn command_line(&self) -> String {
        let d = self.dir.path().display();
        format!(
            "{} --root {d}/root --runroot {d}/run --runtime {} --cgroup-manager cgroupfs --events-backend file",
            self.bin.display(),
            self.runtime.display()
        )
    }

    pub fn command(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--runtime")
            .arg(&self.runtime)
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
        c
    }

    pub fn podman(&self, args: &[&str]) -> Out {
        output(self.command().args(args))
    }

    /// Every container podman made here (running or not).
    pub fn ids(&self) -> Vec<String> {
        self.podman(&["ps", "-aq", "--no-trunc"]).stdout.split_whitespace().map(String::from).collect()
    }

    /// Nothing of container `id` is left: no keeper, relay or VMM naming it, no
    /// runtime state, no sandbox directory (waiting up to 15 s).
    pub fn assert_nothing_left(&self, id: &str) {
        let procs = || pids_with_args(&[id]);
        let short = &id[..id.len().min(15)];
        let sandboxes = || -> Vec<PathBuf> {
            std::fs::read_dir(isola_sandbox::state::default_root())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(short)))
                .collect()
        };
        let state = Path::new("/run/isola-runtime").join(id);
        let clean = || procs().is_empty() && sandboxes().is_empty() && !state.exists();
        let until = Instant::now() + Duration::from_secs(15);
        while !clean() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(procs().is_empty(), "processes of {id} left: {:?}", procs());
        assert!(sandboxes().is_empty(), "sandboxes of {id} left: {:?}", sandboxes());
        assert!(!state.exists(), "runtime state of {id} left");
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let ids = self.ids();
        for id in &ids {
            let _ = self.podman(&["rm", "-f", "-t", "0", id]);
        }
        for id in &ids {
            for pid in pids_with_args(&[id]) {
                kill9(pid);
            }
        }
        let d = self.dir.path().to_str().unwrap_or("?").to_string();
        for pid in pids_with_args(&[&d]) {
            kill9(pid);
        }
        for m in std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().rev() {
            if let Some(p) = m.split(' ').nth(4).filter(|p| p.starts_with(&d)) {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        // The bridge podman's CNI network made (its rules go with each container).
        let _ = Command::new("ip").args(["link", "del", "cni-podman0"]).output();
    }
}
