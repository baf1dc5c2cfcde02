//! A real dockerd (Debian's docker.io 20.10) for the `isola-runtime` tests: its own
//! data root, exec root, socket and isola state directory under a temporary
//! directory, `isola` registered as a runtime (`--add-runtime`, as daemon.json's
//! `runtimes` does), no iptables rules of its own (nothing left in the host's tables),
//! and a busybox image imported from a rootfs archive built offline. Dropping it
//! removes its containers and kills dockerd (and the containerd it started) by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::containerd::{kill9, pids_with_args, Out};

pub const IMAGE: &str = "isola-busybox:test";

/// The busybox rootfs (every applet) as a tar archive: what `docker import` and
/// `podman import` take.
pub fn rootfs_archive(dir: &Path) -> PathBuf {
    let archive = dir.join("busybox-rootfs.tar");
    if !archive.exists() {
        let out = Command::new("tar")
            .arg("-C")
            .arg(crate::busybox_rootfs())
            .args(["-cf"])
            .arg(&archive)
            .arg(".")
            .output()
            .expect("tar");
        assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    }
    archive
}

/// Runs a command; (stdout, stderr, code).
pub fn output(cmd: &mut Command) -> Out {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    Out {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// The `isola-runtime` binary of this build.
pub fn runtime_binary() -> PathBuf {
    crate::require_binary("isola-runtime", "cargo build --workspace")
}

/// Runs `cmd` under a pseudo-terminal (`script`), feeding `input` after `delay`:
/// what a user typing into `docker run -it` does. Returns everything printed, CRs removed.
pub fn with_terminal(cmd: &str, input: &str, delay: Duration) -> String {
    use std::io::Write;
    let mut child = Command::new(crate::require_binary("script", "apt-get install bsdutils"))
        .args(["-qfc", cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let mut stdin = child.stdin.take().expect("stdin");
    std::thread::sleep(delay);
    let _ = stdin.write_all(input.as_bytes());
    // Kept open until the container exits (an early EOF would end the session first).
    let until = Instant::now() + Duration::from_secs(120);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    drop(stdin);
    let out = child.wait_with_output().expect("script output");
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

pub struct Docker {
    child: Child,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub isola_state: PathBuf,
    client: PathBuf,
}

impl Docker {
    pub fn start() -> Self {
        let dockerd = crate::require_binary("dockerd", "apt-get install docker.io");
        // Debian's client, matching the daemon (a newer one elsewhere on PATH may not).
        let client = Some(PathBuf::from("/usr/bin/docker"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| crate::require_binary("docker", "apt-get install docker.io"));
        let dir = tempfile::Builder::new().prefix("isola-docker-").tempdir().expect("tmp");
        let d = dir.path();
        let sock = d.join("docker.sock");
        let isola_state = d.join("isola");
        std::fs::create_dir_all(&isola_state).expect("state dir");
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log");
        let child = Command::new(dockerd)
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--add-runtime")
            .arg(format!("isola={}", runtime_binary().display()))
            .args(["--iptables=false", "--ip-masq=false"])
            .env("ISOLA_STATE_DIR", &isola_state)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let docker = Docker { child, dir, sock, isola_state, client };
        let until = Instant::now() + Duration::from_secs(90);
        while docker.docker(&["info"]).code != 0 {
            assert!(Instant::now() < until, "dockerd did not come up: {}", docker.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        let archive = rootfs_archive(docker.dir.path());
        let out = docker.docker(&["import", archive.to_str().expect("path"), IMAGE]);
        assert_eq!(out.code, 0, "docker import: {}{}", out.stdout, out.stderr);
        docker
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.client);
        c.arg("-H").arg(format!("unix://{}", self.sock.display()));
        c
    }

    /// The shell command line of the client, for [`with_terminal`].
    pub fn command_line(&self) -> String {
        format!("{} -H unix://{}", self.client.display(), self.sock.display())
    }

    pub fn docker(&self, args: &[&str]) -> Out {
        output(self.command().args(args))
    }

    /// Keepers (the processes Docker waits on) of our containers.
    pub fn keeper_pids(&self) -> Vec<i32> {
        pids_with_args(&["__isola keeper", self.dir.path().to_str().unwrap_or("?")])
    }

    /// VMMs and helpers of our sandboxes.
    pub fn sandbox_pids(&self) -> Vec<i32> {
        pids_with_args(&[self.isola_state.to_str().unwrap_or("?")])
    }

    /// No keeper, relay, VMM or helper process, no sandbox or runtime state (waiting
    /// up to 15 s for them to go).
    pub fn assert_nothing_left(&self) {
        let relays = || pids_with_args(&["__isola relay", self.dir.path().to_str().unwrap_or("?")]);
        let state = || -> Vec<PathBuf> {
            std::fs::read_dir(&self.isola_state).into_iter().flatten().flatten().map(|e| e.path()).collect()
        };
        let runtime_state = || -> Vec<PathBuf> {
            let root = self.dir.path().join("exec/runtime-runc/moby");
            std::fs::read_dir(root).into_iter().flatten().flatten().map(|e| e.path()).collect()
        };
        let clean = || {
            self.keeper_pids().is_empty()
                && relays().is_empty()
                && self.sandbox_pids().is_empty()
                && state().is_empty()
                && runtime_state().is_empty()
        };
        let until = Instant::now() + Duration::from_secs(15);
        while !clean() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(self.keeper_pids().is_empty(), "keepers left: {:?}", self.keeper_pids());
        assert!(relays().is_empty(), "relays left: {:?}", relays());
        assert!(self.sandbox_pids().is_empty(), "sandbox processes left: {:?}", self.sandbox_pids());
        assert!(state().is_empty(), "sandbox state left: {:?}", state());
        assert!(runtime_state().is_empty(), "runtime state left: {:?}", runtime_state());
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]).stdout;
        for id in ids.split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let until = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Whatever a failed test left: containerd, shims, keepers, VMs.
        let d = self.dir.path().to_str().unwrap_or("?").to_string();
        for pid in pids_with_args(&[&d]).into_iter().chain(self.sandbox_pids()) {
            kill9(pid);
        }
        std::thread::sleep(Duration::from_millis(300));
        for m in std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().rev() {
            if let Some(p) = m.split(' ').nth(4).filter(|p| p.starts_with(&d)) {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for st in std::fs::read_dir(&self.isola_state).into_iter().flatten().flatten() {
            let s = isola_sandbox::state::SandboxState::load(&st.path()).ok();
            isola_sandbox::state::cleanup(&st.path(), s.as_ref());
        }
        let _ = Command::new("ip").args(["link", "del", "docker0"]).output();
    }
}
