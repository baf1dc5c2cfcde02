//! A real containerd (Debian's) for the shim tests: its own root, state, socket and
//! isola state directory under a temporary directory, the isola runtime registered for
//! ctr and CRI, a CNI bridge network, and a busybox image imported from an archive
//! built offline. Dropping it kills containerd and the shims it started, by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const RUNTIME: &str = "io.containerd.isola.v2";
pub const IMAGE: &str = "docker.io/library/busybox:isola";
/// Guest memory of CRI pods, set by the `ConfigPath` runtime option.
pub const CRI_VM_MIB: u64 = 384;
/// The CNI bridge on the host, removed when the fixture goes.
const CNI_BRIDGE: &str = "isolacni0";

/// Which containerd: Debian's 1.6 (task API v2) or 2.3 (task API v3, config version 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Debian,
    V2_3,
}

pub struct Containerd {
    child: Child,
    pub flavor: Flavor,
    bin: PathBuf,
    ctr_bin: PathBuf,
    /// Network namespaces that existed before: any other `cni-*` one is CRI's, ours to remove.
    netns_before: Vec<String>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    /// `ISOLA_STATE_DIR` of the shims this containerd starts.
    pub isola_state: PathBuf,
}

/// (stdout, stderr, exit code) of a finished command.
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

fn config(d: &Path) -> String {
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{d}/c.sock"
[plugins."io.containerd.grpc.v1.cri"]
  # No CAP_SYS_RESOURCE here.
  restrict_oom_score_adj = true
  # The sandbox is the VM: this image is never run, only unpacked.
  sandbox_image = "{IMAGE}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.isola]
      runtime_type = "{RUNTIME}"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.isola.options]
        ConfigPath = "{d}/isola-cri.toml"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"#,
        d = d.display()
    )
}

/// containerd 2.x's config (version 3): the CRI runtime section moved to
/// `io.containerd.cri.v1.runtime`.
fn config_v3(d: &Path) -> String {
    format!(
        r#"version = 3
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/c.sock"
[plugins."io.containerd.cri.v1.images".pinned_images]
  # The pause-container path's sandbox is the VM: this image is never run, only unpacked.
  sandbox = "{IMAGE}"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.isola]
    runtime_type = "{RUNTIME}"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.isola.options]
      ConfigPath = "{d}/isola-cri.toml"
  # The same shim as the pod's sandboxer: the sandbox API, no pause container.
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{SANDBOXER_HANDLER}]
    runtime_type = "{RUNTIME}"
    sandboxer = "shim"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{SANDBOXER_HANDLER}.options]
      ConfigPath = "{d}/isola-cri.toml"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{d}/cni"
# Block-file snapshots (ext4 images copied from this empty one): the shim hands a
# container's to its VM as a disk.
[plugins."io.containerd.snapshotter.v1.blockfile"]
  scratch_file = "{d}/blockfile-scratch.ext4"
  fs_type = "ext4"
  mount_options = []
  recreate_scratch = false
"#,
        d = d.display()
    )
}

/// containerd 2.x's CRI runtime handler whose pods the shim makes itself (`sandboxer = "shim"`).
pub const SANDBOXER_HANDLER: &str = "isola-sandboxer";

/// containerd 2.3's directory: `$ISOLA_CONTAINERD2_DIR`, else `../shared/containerd-2.3`
/// beside the repository. Tests do not skip when it is missing.
pub fn containerd_2_3_dir() -> PathBuf {
    let dir = std::env::var_os("ISOLA_CONTAINERD2_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/containerd-2.3"));
    assert!(
        dir.join("containerd").is_file() && dir.join("ctr").is_file(),
        "containerd 2.3 not found in {} (set ISOLA_CONTAINERD2_DIR to a directory with containerd and ctr 2.3); \
         the containerd 2.x tests did not run",
        dir.display()
    );
    dir
}

/// The empty ext4 image containerd's blockfile snapshotter copies for each snapshot.
fn blockfile_scratch(path: &Path) {
    let f = std::fs::File::create(path).expect("scratch file");
    f.set_len(256 << 20).expect("scratch size");
    let out = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(path).output().expect("mkfs.ext4 (e2fsprogs)");
    assert!(out.status.success(), "mkfs.ext4: {}", String::from_utf8_lossy(&out.stderr));
}

fn cni(d: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "isola-test",
        "plugins": [{
            "type": "bridge", "bridge": CNI_BRIDGE, "isGateway": true, "ipMasq": false,
            "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": format!("{}/ipam", d.display())}
        }]
    })
    .to_string()
}

/// containerd on `d`'s config, logging (appended, across restarts) to `d`/containerd.log.
fn spawn(bin: PathBuf, shim: &Path, d: &Path, isola_state: &Path) -> Child {
    let path = format!("{}:{}", shim.parent().expect("shim dir").display(), std::env::var("PATH").unwrap_or_default());
    let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("containerd.log")).expect("log");
    Command::new(bin)
        .arg("--config")
        .arg(d.join("config.toml"))
        .env("PATH", path)
        .env("ISOLA_STATE_DIR", isola_state)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start containerd")
}

impl Containerd {
    /// Debian's containerd 1.6, or 2.3 when `ISOLA_CONTAINERD=2.3` (how scripts/test.sh
    /// runs the same ctr tests on both).
    pub fn start() -> Self {
        if std::env::var("ISOLA_CONTAINERD").as_deref() == Ok("2.3") {
            return Self::start_2_3();
        }
        let bin = crate::require_binary("containerd", "apt-get install containerd");
        let ctr = crate::require_binary("ctr", "apt-get install containerd");
        Self::start_with(Flavor::Debian, bin, ctr)
    }

    /// containerd 2.3 ([`containerd_2_3_dir`]).
    pub fn start_2_3() -> Self {
        let dir = containerd_2_3_dir();
        Self::start_with(Flavor::V2_3, dir.join("containerd"), dir.join("ctr"))
    }

    fn start_with(flavor: Flavor, bin: PathBuf, ctr_bin: PathBuf) -> Self {
        let shim = crate::require_binary("containerd-shim-isola-v2", "cargo build");
        for plugin in ["bridge", "host-local"] {
            assert!(
                Path::new("/usr/lib/cni").join(plugin).is_file(),
                "/usr/lib/cni/{plugin} is missing (apt-get install containernetworking-plugins); tests do not skip"
            );
        }
        let dir = tempfile::Builder::new().prefix("ctrd").tempdir_in("/tmp").expect("containerd dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("cni")).expect("cni dir");
        let config = match flavor {
            Flavor::Debian => config(d),
            Flavor::V2_3 => {
                blockfile_scratch(&d.join("blockfile-scratch.ext4"));
                config_v3(d)
            }
        };
        std::fs::write(d.join("config.toml"), config).expect("config");
        std::fs::write(d.join("cni/10-isola.conflist"), cni(d)).expect("cni config");
        // Only CRI pods get this file (through the runtime options): their VMs are bigger.
        std::fs::write(d.join("isola-cri.toml"), format!("memory_mib = {CRI_VM_MIB}\n")).expect("isola config");
        let isola_state = d.join("isola");
        let child = spawn(bin.clone(), &shim, d, &isola_state);
        let c = Containerd {
            child,
            flavor,
            bin,
            ctr_bin,
            netns_before: netns_names(),
            sock: d.join("c.sock"),
            isola_state,
            dir,
        };
        c.wait_up();
        c
    }

    /// Kills containerd (-9, as a crash would) and starts it again on the same root,
    /// state and socket; the shims it had started keep running and are reconnected.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let shim = crate::require_binary("containerd-shim-isola-v2", "cargo build");
        self.child = spawn(self.bin.clone(), &shim, self.dir.path(), &self.isola_state);
        self.wait_up();
    }

    fn wait_up(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        while self.ctr(&["version"]).code != 0 {
            assert!(Instant::now() < until, "containerd did not come up:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr -a <our socket> ARGS`.
    pub fn ctr(&self, args: &[&str]) -> Out {
        self.ctr_in(None, args)
    }

    /// `ctr -a <our socket>`, this containerd's own ctr.
    pub fn ctr_command(&self) -> Command {
        let mut c = Command::new(&self.ctr_bin);
        c.arg("-a").arg(&self.sock);
        c
    }

    pub fn ctr_in(&self, namespace: Option<&str>, args: &[&str]) -> Out {
        let mut c = self.ctr_command();
        if let Some(ns) = namespace {
            c.args(["-n", ns]);
        }
        let out = c.args(args).stdin(Stdio::null()).output().expect("run ctr");
        Out {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code().unwrap_or(-1),
        }
    }

    /// Builds the busybox image offline and imports it into `namespace` as [`IMAGE`].
    pub fn import_image(&self, namespace: &str) {
        self.import_image_into(namespace, None)
    }

    /// [`Containerd::import_image`], unpacked by `snapshotter` (containerd's default
    /// when None).
    pub fn import_image_into(&self, namespace: &str, snapshotter: Option<&str>) {
        let layout = self.dir.path().join("layout");
        if !layout.join("index.json").exists() {
            crate::registry::build_layout(&layout, "isola", "hello from the image");
        }
        let archive = self.dir.path().join("busybox.tar");
        if !archive.exists() {
            let out = Command::new(crate::require_binary("skopeo", "apt-get install skopeo"))
                .args(["copy", "--quiet"])
                .arg(format!("oci:{}:isola", layout.display()))
                .arg(format!("docker-archive:{}:{IMAGE}", archive.display()))
                .output()
                .expect("skopeo");
            assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut args = vec!["images", "import"];
        if let Some(s) = snapshotter {
            // The transfer service unpacks only for the snapshotters its config lists.
            args.extend(["--local", "--snapshotter", s]);
        }
        args.push(archive.to_str().expect("path"));
        let out = self.ctr_in(Some(namespace), &args);
        assert_eq!(out.code, 0, "ctr images import: {}{}", out.stdout, out.stderr);
    }

    /// Pids of the shims this containerd started (their `-address` is our socket).
    pub fn shim_pids(&self) -> Vec<i32> {
        pids_with_args(&["containerd-shim-isola-v2", self.sock.to_str().unwrap_or("?")])
    }

    /// The ttrpc socket a running shim serves (its `-socket` argument).
    pub fn shim_socket(pid: i32) -> Option<PathBuf> {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let i = args.iter().position(|a| a == "-socket")?;
        Some(PathBuf::from(args.get(i + 1)?.trim_start_matches("unix://")))
    }

    /// Sandbox processes (VMM and helpers) whose command line names our isola state dir.
    pub fn sandbox_pids(&self) -> Vec<i32> {
        pids_with_args(&[self.isola_state.to_str().unwrap_or("?")])
    }

    /// Nothing of a sandbox is left (waiting up to 10 s for it to go): no shim, no VMM
    /// or helper process, no mount, no isola state directory.
    pub fn assert_nothing_left(&self) {
        let clean = || self.sandbox_pids().is_empty() && self.shim_pids().is_empty() && self.mounts().is_empty();
        let until = Instant::now() + Duration::from_secs(10);
        while !clean() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(self.sandbox_pids().is_empty(), "sandbox processes left: {:?}", self.sandbox_pids());
        assert!(self.shim_pids().is_empty(), "shims left: {:?}", self.shim_pids());
        assert!(self.mounts().is_empty(), "mounts left: {:?}", self.mounts());
        let dirs: Vec<_> =
            std::fs::read_dir(&self.isola_state).into_iter().flatten().flatten().map(|e| e.path()).collect();
        assert!(dirs.is_empty(), "sandbox state left: {dirs:?}");
    }

    /// Mount points under our directory (rootfs overlays, binds, the share).
    pub fn mounts(&self) -> Vec<String> {
        let root = self.dir.path().display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|m| m.starts_with(&root) && m.contains("/isola/"))
            .collect()
    }
}

/// Processes whose command line contains every one of `needles`.
pub fn pids_with_args(needles: &[&str]) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !cmd.is_empty() && needles.iter().all(|n| cmd.contains(n)) {
            pids.push(pid);
        }
    }
    pids
}

/// `MemTotal` (KiB) from a guest's /proc/meminfo: how big the VM is.
pub fn mem_total_kib(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in {meminfo:?}"))
}

fn netns_names() -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A test that failed half-way leaves shims, VMs and pod namespaces: end them all.
        for pid in self.shim_pids() {
            let socket = Self::shim_socket(pid);
            kill9(pid);
            if let Some(s) = socket {
                let _ = std::fs::remove_file(format!("{}-v3", s.display()));
                let _ = std::fs::remove_file(s);
            }
        }
        for pid in self.sandbox_pids() {
            kill9(pid);
        }
        for ns in netns_names().into_iter().filter(|n| n.starts_with("cni-") && !self.netns_before.contains(n)) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // containerd's own snapshot mounts and the CNI bridge.
        for m in std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines() {
            if let Some(p) = m.split(' ').nth(4).filter(|p| p.starts_with(&self.dir.path().display().to_string())) {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = Command::new("ip").args(["link", "del", CNI_BRIDGE]).output();
    }
}
