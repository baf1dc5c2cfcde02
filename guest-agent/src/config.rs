//! What the init helper needs to build one container process, derived from the OCI
//! spec by the agent and handed to the helper as JSON.

use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("spec has no process")]
    NoProcess,
    #[error("process has no args")]
    NoArgs,
    #[error("path {0:?} must be absolute and must not contain '..'")]
    BadPath(String),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("user namespace: {0}")]
    UserNs(String),
    #[error("hostname requires a new UTS namespace")]
    HostnameWithoutUts,
    #[error("sysctl {0:?} is not allowed: {1}")]
    Sysctl(String, &'static str),
    #[error("linux.devices: {path}: {reason}")]
    Device { path: String, reason: String },
}

/// A device node the spec asks for (`linux.devices`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// Absolute path inside the container.
    pub path: String,
    /// 'c' (character), 'b' (block) or 'p' (FIFO).
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Permission bits (0o666 when the spec gives none).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

fn devices(spec: &Spec) -> Result<Vec<DeviceSpec>, ConfigError> {
    use oci_spec::runtime::LinuxDeviceType;
    let list = spec.linux().as_ref().and_then(|l| l.devices().clone()).unwrap_or_default();
    let mut out = Vec::with_capacity(list.len());
    for d in &list {
        let path = d.path().to_string_lossy().to_string();
        let bad = |reason: &str| ConfigError::Device { path: path.clone(), reason: reason.into() };
        join_inside(Path::new("/"), &path).map_err(|_| bad("must be an absolute path without '..'"))?;
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::P => 'p',
            LinuxDeviceType::A => return Err(bad("type \"a\" is for cgroup rules, not a node")),
        };
        let number = |n: i64, what: &str| u64::try_from(n).map_err(|_| bad(&format!("{what} {n} is negative")));
        let (major, minor) = (number(d.major(), "major")?, number(d.minor(), "minor")?);
        if kind != 'p' && (major > 0xfff || minor > 0xfffff) {
            return Err(bad(&format!("{major}:{minor} is not a device number")));
        }
        let mode = d.file_mode().unwrap_or(0o666);
        if mode & !0o7777 != 0 {
            return Err(bad(&format!("fileMode {mode:#o} has bits beyond permissions")));
        }
        out.push(DeviceSpec { path, kind, major, minor, mode, uid: d.uid().unwrap_or(0), gid: d.gid().unwrap_or(0) });
    }
    Ok(out)
}

/// One line of /proc/<pid>/uid_map or gid_map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// A user namespace with these mappings (the spec's `user` namespace).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNs {
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
}

impl UserNs {
    /// The text written to a uid_map/gid_map file.
    pub fn map_text(maps: &[IdMap]) -> String {
        maps.iter().map(|m| format!("{} {} {}\n", m.container, m.host, m.size)).collect()
    }
}

fn user_ns(spec: &Spec) -> Result<Option<UserNs>, ConfigError> {
    let Some(linux) = spec.linux().as_ref() else { return Ok(None) };
    let wants = linux.namespaces().iter().flatten().find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User);
    let Some(ns) = wants else { return Ok(None) };
    if ns.path().is_some() {
        return Err(ConfigError::UserNs("joining an existing user namespace by path is not supported".into()));
    }
    let conv = |v: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>, what: &str| {
        let maps: Vec<IdMap> = v
            .iter()
            .flatten()
            .map(|m| IdMap { container: m.container_id(), host: m.host_id(), size: m.size() })
            .collect();
        if maps.is_empty() || maps.len() > 340 || maps.iter().any(|m| m.size == 0) {
            return Err(ConfigError::UserNs(format!("{what} must have 1-340 non-empty entries")));
        }
        Ok(maps)
    };
    Ok(Some(UserNs {
        uid_map: conv(linux.uid_mappings(), "uidMappings")?,
        gid_map: conv(linux.gid_mappings(), "gidMappings")?,
    }))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub source: String,
    /// Absolute path inside the container.
    pub destination: String,
    pub fstype: String,
    pub flags: u64,
    pub data: Option<String>,
    /// A bind mount of a file (so the target is a file, not a directory).
    pub file_bind: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub terminal: bool,
    pub rlimits: Vec<Rlimit>,
    pub caps: Option<CapSets>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// A new container: fresh namespaces, this rootfs.
    Create {
        rootfs: PathBuf,
        hostname: Option<String>,
        mounts: Vec<MountSpec>,
        masked: Vec<String>,
        readonly: Vec<String>,
        /// (path in the container, contents): /etc/hosts, /etc/resolv.conf, /etc/hostname.
        files: Vec<(String, String)>,
        /// The spec joins an existing IPC / UTS namespace (a pod member under CRI): in a
        /// VM per pod, that is the guest's own, shared by the pod's containers.
        #[serde(default)]
        share_ipc: bool,
        #[serde(default)]
        share_uts: bool,
        /// The spec's sysctls, checked to be namespaced (`/proc/sys` path, value).
        #[serde(default)]
        sysctls: Vec<(String, String)>,
        /// `root.readonly`: the root is remounted read-only once everything is on it.
        #[serde(default)]
        root_readonly: bool,
        /// `linux.devices`, made after the default ones.
        #[serde(default)]
        devices: Vec<DeviceSpec>,
    },
    /// A process joining the namespaces of the container whose init is `pid`.
    Exec { pid: i32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitConfig {
    pub mode: Mode,
    /// The cgroup directory to join before anything else.
    pub cgroup: Option<PathBuf>,
    pub process: ProcessConfig,
    /// The container's seccomp filter (exec'd processes get the container's too).
    #[serde(default)]
    pub seccomp: Option<crate::seccomp::Profile>,
    /// Create: a new user namespace with these maps. Exec: join the container's.
    #[serde(default)]
    pub user_ns: Option<UserNs>,
}

/// Resource limit: (resource name as in OCI, soft, hard).
pub type Rlimit = (String, u64, u64);

/// Capability names (`CAP_…`) per set, as in the OCI spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CapSets {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
    pub inheritable: Vec<String>,
    pub ambient: Vec<String>,
}

/// Joins an absolute container path onto `root`, refusing `..` so nothing lands outside.
pub fn join_inside(root: &Path, path: &str) -> Result<PathBuf, ConfigError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(ConfigError::BadPath(path.into()));
    }
    let mut out = root.to_path_buf();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return Err(ConfigError::BadPath(path.into())),
        }
    }
    Ok(out)
}

/// The spec's sysctls as `/proc/sys` files, as runc allows them: those of the IPC
/// namespace (`kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`), of the
/// network namespace (`net.*`: the VM's, which is the pod's), and of the UTS namespace
/// when the container has one. A sysctl of the whole guest kernel is refused: it would
/// reach the container's pod neighbours.
fn sysctls(spec: &Spec, has_uts: bool) -> Result<Vec<(String, String)>, ConfigError> {
    sysctl_writes(spec.linux().as_ref().and_then(|l| l.sysctl().clone()).unwrap_or_default(), has_uts)
}

/// Sysctls (name, value) as checked `/proc/sys` writes; see [`sysctls`].
pub fn sysctl_writes(
    all: impl IntoIterator<Item = (String, String)>,
    has_uts: bool,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut keys: Vec<_> = all.into_iter().collect();
    keys.sort();
    for (key, value) in keys {
        let bad = |why| ConfigError::Sysctl(key.clone(), why);
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/')) {
            return Err(bad("not a sysctl name"));
        }
        let name = key.replace('/', ".");
        if name.split('.').any(|c| c.is_empty() || c == "..") {
            return Err(bad("not a sysctl name"));
        }
        let ipc = ["kernel.shmmax", "kernel.shmall", "kernel.shmmni", "kernel.shm_rmid_forced", "kernel.msgmax"]
            .contains(&name.as_str())
            || ["kernel.msgmnb", "kernel.msgmni", "kernel.sem"].contains(&name.as_str())
            || name.starts_with("fs.mqueue.");
        let uts = name == "kernel.hostname" || name == "kernel.domainname";
        let allowed = ipc || name.starts_with("net.") || (uts && has_uts);
        if !allowed {
            return Err(bad(if uts {
                "needs a new UTS namespace"
            } else {
                "not namespaced (it would reach the whole guest)"
            }));
        }
        if value.contains('\n') || value.len() > 4096 {
            return Err(bad("the value has a newline or is too long"));
        }
        out.push((format!("/proc/sys/{}", name.replace('.', "/")), value));
    }
    Ok(out)
}

/// OCI mount options → (flags, data), by the one table ([`isola_protocol::mount_options`]).
pub fn mount_flags(options: &[String]) -> (MsFlags, Option<String>) {
    let (bits, data) = isola_protocol::mount_options::split(options);
    (MsFlags::from_bits_retain(bits), (!data.is_empty()).then(|| data.join(",")))
}

fn process_config(p: &Process) -> Result<ProcessConfig, ConfigError> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(ConfigError::NoArgs);
    }
    let cwd = p.cwd().to_string_lossy().to_string();
    join_inside(Path::new("/"), &cwd)?;
    let user = p.user();
    let caps = p.capabilities().as_ref().map(|c| {
        let names = |s: &Option<oci_spec::runtime::Capabilities>| -> Vec<String> {
            let mut v: Vec<String> =
                s.iter().flatten().map(|c| format!("CAP_{c}").replace("CAP_CAP_", "CAP_")).collect();
            v.sort();
            v
        };
        CapSets {
            bounding: names(c.bounding()),
            effective: names(c.effective()),
            permitted: names(c.permitted()),
            inheritable: names(c.inheritable()),
            ambient: names(c.ambient()),
        }
    });
    let rlimits = p
        .rlimits()
        .iter()
        .flatten()
        .map(|r| {
            (
                format!("{:?}", r.typ()).to_uppercase().replace("RLIMIT", "RLIMIT_").replace("RLIMIT__", "RLIMIT_"),
                r.soft(),
                r.hard(),
            )
        })
        .collect();
    Ok(ProcessConfig {
        args,
        env: p.env().clone().unwrap_or_default(),
        cwd,
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        terminal: p.terminal().unwrap_or(false),
        rlimits,
        caps,
        no_new_privileges: p.no_new_privileges().unwrap_or(false),
        oom_score_adj: p.oom_score_adj(),
    })
}

/// Builds the helper's config for a new container from its spec.
pub fn for_create(
    spec: &Spec,
    rootfs: &Path,
    cgroup: Option<PathBuf>,
    files: Vec<(String, String)>,
) -> Result<InitConfig, ConfigError> {
    let process = process_config(spec.process().as_ref().ok_or(ConfigError::NoProcess)?)?;
    let user_ns = user_ns(spec)?;
    let mut mounts = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination().to_string_lossy().to_string();
        join_inside(Path::new("/"), &dest)?;
        let (flags, data) = mount_flags(m.options().as_deref().unwrap_or(&[]));
        let source = m.source().as_ref().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "none".into());
        let mut fstype = m.typ().clone().unwrap_or_default();
        // The guest has only the unified hierarchy (as runc does on cgroup v2 hosts).
        if fstype == "cgroup" {
            fstype = "cgroup2".into();
        }
        let (mut source, mut flags) = (source, flags);
        // In a user namespace sysfs and cgroup2 cannot be mounted afresh (their network
        // and cgroup namespaces are the sandbox's); bind the guest's instead, as runc does.
        if user_ns.is_some() && (fstype == "sysfs" || fstype == "cgroup2") {
            source = if fstype == "sysfs" { "/sys".into() } else { "/sys/fs/cgroup".into() };
            flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
            fstype = String::new();
        }
        let is_bind = flags.contains(MsFlags::MS_BIND) || fstype == "bind";
        let file_bind = is_bind && Path::new(&source).is_file();
        let bind_type = fstype == "bind";
        mounts.push(MountSpec {
            source,
            destination: dest,
            fstype: if bind_type { String::new() } else { fstype },
            flags: (if bind_type { flags | MsFlags::MS_BIND } else { flags }).bits(),
            data,
            file_bind,
        });
    }
    // A file the spec mounts is the host's (CRI's hosts, resolv.conf, hostname): never
    // written by us, so its contents (the pod's DNS) are what the container reads.
    let mut files = files;
    files.retain(|(path, _)| {
        let p = join_inside(Path::new("/"), path).ok();
        !mounts.iter().any(|m| join_inside(Path::new("/"), &m.destination).ok() == p)
    });
    let linux = spec.linux().as_ref();
    let has_uts = isola_protocol::spec_rules::has_uts_namespace(spec);
    if isola_protocol::spec_rules::hostname_without_uts(spec).is_some() {
        return Err(ConfigError::HostnameWithoutUts);
    }
    let sysctls = sysctls(spec, has_uts)?;
    // A namespace given by path is one to join: the pod's. Anything else is new.
    let joins = |t: LinuxNamespaceType| {
        linux
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == t && n.path().is_some()))
    };
    Ok(InitConfig {
        mode: Mode::Create {
            rootfs: rootfs.to_path_buf(),
            hostname: spec.hostname().clone(),
            mounts,
            masked: linux.and_then(|l| l.masked_paths().clone()).unwrap_or_default(),
            readonly: linux.and_then(|l| l.readonly_paths().clone()).unwrap_or_default(),
            files,
            share_ipc: joins(LinuxNamespaceType::Ipc),
            share_uts: joins(LinuxNamespaceType::Uts),
            sysctls,
            root_readonly: spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
            devices: devices(spec)?,
        },
        cgroup,
        process,
        seccomp: linux.and_then(|l| l.seccomp().as_ref()).map(crate::seccomp::from_oci).transpose()?,
        user_ns,
    })
}

/// For a rootfs written in place (the host's bundle): the /etc files are not written
/// into it, as runc writes none; each is kept in `dir` (the agent's own) and bound over
/// its path, so the container reads the sandbox's names while the bundle keeps its own.
pub fn files_as_binds(cfg: &mut InitConfig, dir: &Path) -> std::io::Result<()> {
    let Mode::Create { files, mounts, .. } = &mut cfg.mode else { return Ok(()) };
    if files.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    for (i, (path, contents)) in std::mem::take(files).into_iter().enumerate() {
        let source = dir.join(i.to_string());
        std::fs::write(&source, contents)?;
        mounts.push(MountSpec {
            source: source.to_string_lossy().into(),
            destination: path,
            fstype: String::new(),
            flags: (MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC).bits(),
            data: None,
            file_bind: true,
        });
    }
    Ok(())
}

/// Builds the helper's config for a process joining container init `pid`.
pub fn for_exec(
    process: &Process,
    pid: i32,
    cgroup: Option<PathBuf>,
    seccomp: Option<crate::seccomp::Profile>,
    user_ns: Option<UserNs>,
) -> Result<InitConfig, ConfigError> {
    Ok(InitConfig { mode: Mode::Exec { pid }, cgroup, process: process_config(process)?, seccomp, user_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_leave_the_root() {
        let r = Path::new("/run/c/rootfs");
        assert_eq!(join_inside(r, "/etc/hosts").expect("ok"), Path::new("/run/c/rootfs/etc/hosts"));
        assert_eq!(join_inside(r, "/./a//b").expect("ok"), Path::new("/run/c/rootfs/a/b"));
        for bad in ["../etc", "/a/../../etc/shadow", "relative", "/.."] {
            assert!(join_inside(r, bad).is_err(), "{bad}");
        }
    }

    fn spec_with(devices: serde_json::Value, readonly: bool) -> Spec {
        let mut v = serde_json::to_value(Spec::default()).expect("json");
        v["linux"]["devices"] = devices;
        v["root"]["readonly"] = serde_json::Value::Bool(readonly);
        serde_json::from_value(v).expect("spec")
    }

    #[test]
    fn devices_and_a_readonly_root_come_from_the_spec() {
        let dir = tempfile::tempdir().expect("tmp");
        let spec = spec_with(
            serde_json::json!([
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600, "uid": 5, "gid": 6},
                {"path": "/dev/loop9", "type": "b", "major": 7, "minor": 9},
                {"path": "/dev/fifo", "type": "p"}
            ]),
            true,
        );
        let cfg = for_create(&spec, dir.path(), None, vec![]).expect("config");
        let Mode::Create { devices, root_readonly, .. } = cfg.mode else { panic!("create mode") };
        assert!(root_readonly);
        let d = |path: &str, kind, major, minor, mode, uid, gid| DeviceSpec {
            path: path.into(),
            kind,
            major,
            minor,
            mode,
            uid,
            gid,
        };
        assert_eq!(
            devices,
            [
                d("/dev/fuse", 'c', 10, 229, 0o600, 5, 6),
                d("/dev/loop9", 'b', 7, 9, 0o666, 0, 0),
                d("/dev/fifo", 'p', 0, 0, 0o666, 0, 0)
            ]
        );
        let cfg = for_create(&spec_with(serde_json::json!([]), false), dir.path(), None, vec![]).expect("config");
        assert!(matches!(cfg.mode, Mode::Create { root_readonly: false, .. }));
    }

    #[test]
    fn a_bad_device_is_refused_by_its_path_and_reason() {
        let dir = tempfile::tempdir().expect("tmp");
        for (dev, want) in [
            (serde_json::json!({"path": "/dev/../etc/x", "type": "c", "major": 1, "minor": 3}), "/dev/../etc/x"),
            (serde_json::json!({"path": "/dev/x", "type": "c", "major": -1, "minor": 3}), "major -1 is negative"),
            (serde_json::json!({"path": "/dev/x", "type": "a"}), "cgroup rules"),
            (
                serde_json::json!({"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o170000}),
                "fileMode",
            ),
        ] {
            let e = for_create(&spec_with(serde_json::json!([dev]), false), dir.path(), None, vec![]).expect_err("bad");
            let e = e.to_string();
            assert!(e.starts_with("linux.devices: ") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn in_place_files_become_binds_from_the_agents_dir() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = vec![("/etc/hosts".to_string(), "127.0.0.1 localhost\n".to_string())];
        let mut cfg = for_create(&Spec::default(), dir.path(), None, files).expect("config");
        files_as_binds(&mut cfg, &dir.path().join("files")).expect("binds");
        let Mode::Create { files, mounts, .. } = &cfg.mode else { panic!("create mode") };
        assert!(files.is_empty(), "nothing written into the rootfs");
        let m = mounts.iter().find(|m| m.destination == "/etc/hosts").expect("a bind");
        assert!(m.file_bind && MsFlags::from_bits_truncate(m.flags).contains(MsFlags::MS_BIND));
        assert_eq!(std::fs::read_to_string(&m.source).expect("source"), "127.0.0.1 localhost\n");
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let (f, d) = mount_flags(&["nosuid".into(), "strictatime".into(), "mode=755".into(), "size=65536k".into()]);
        assert!(f.contains(MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME));
        assert_eq!(d.as_deref(), Some("mode=755,size=65536k"));
        let (f, d) = mount_flags(&["rbind".into(), "ro".into(), "rprivate".into()]);
        assert!(f.contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY));
        assert_eq!(d, None);
    }

    #[test]
    fn default_spec_translates_with_its_mounts_and_caps() {
        let mut spec = Spec::default();
        let mut p = spec.process().clone().expect("default process");
        p.set_args(Some(vec!["/bin/echo".into(), "hi".into()]));
        spec.set_process(Some(p));
        let cfg = for_create(&spec, Path::new("/r"), None, vec![]).expect("config");
        let Mode::Create { mounts, masked, .. } = &cfg.mode else { panic!("create mode") };
        assert!(mounts.iter().any(|m| m.destination == "/proc" && m.fstype == "proc"));
        assert!(mounts
            .iter()
            .any(|m| m.destination == "/dev/pts" && m.data.as_deref().is_some_and(|d| d.contains("newinstance"))));
        assert!(masked.iter().any(|m| m == "/proc/kcore"));
        assert!(mounts.iter().any(|m| m.destination == "/sys/fs/cgroup" && m.fstype == "cgroup2"));
        let caps = cfg.process.caps.expect("caps");
        assert!(caps.bounding.contains(&"CAP_KILL".to_string()), "{:?}", caps.bounding);
        assert_eq!(cfg.process.args, ["/bin/echo", "hi"]);
        assert!(cfg.process.rlimits.iter().any(|r| r.0 == "RLIMIT_NOFILE"), "{:?}", cfg.process.rlimits);
    }

    #[test]
    fn the_shared_option_table_sets_the_flags_linux_names() {
        let want = [
            ("ro", MsFlags::MS_RDONLY),
            ("nosuid", MsFlags::MS_NOSUID),
            ("nodev", MsFlags::MS_NODEV),
            ("noexec", MsFlags::MS_NOEXEC),
            ("noatime", MsFlags::MS_NOATIME),
            ("relatime", MsFlags::MS_RELATIME),
            ("strictatime", MsFlags::MS_STRICTATIME),
            ("bind", MsFlags::MS_BIND),
            ("rbind", MsFlags::MS_BIND | MsFlags::MS_REC),
            ("rshared", MsFlags::empty()),
            ("defaults", MsFlags::empty()),
        ];
        for (o, f) in want {
            assert_eq!(mount_flags(&[o.to_string()]), (f, None), "{o}");
        }
    }

    #[test]
    fn every_advertised_mount_option_is_a_flag_not_filesystem_data() {
        for o in isola_protocol::MOUNT_OPTIONS {
            assert_eq!(
                mount_flags(&[o.to_string()]).1,
                None,
                "{o} is advertised but would reach the filesystem as data"
            );
        }
    }

    #[test]
    fn namespaces_given_by_path_are_the_pods_and_the_rest_are_new() {
        use oci_spec::runtime::LinuxNamespaceBuilder;
        let dir = tempfile::tempdir().expect("tmp");
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().expect("linux");
        let ns = |t, path: Option<&str>| {
            let mut b = LinuxNamespaceBuilder::default().typ(t);
            if let Some(p) = path {
                b = b.path(p);
            }
            b.build().expect("ns")
        };
        linux.set_namespaces(Some(vec![
            ns(LinuxNamespaceType::Mount, None),
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Ipc, Some("/proc/42/ns/ipc")),
            ns(LinuxNamespaceType::Uts, None),
        ]));
        spec.set_linux(Some(linux));
        let cfg = for_create(&spec, dir.path(), None, vec![]).expect("config");
        let Mode::Create { share_ipc, share_uts, .. } = cfg.mode else { panic!("create mode") };
        assert!(share_ipc && !share_uts);
        let cfg = for_create(&Spec::default(), dir.path(), None, vec![]).expect("config");
        let Mode::Create { share_ipc, share_uts, .. } = cfg.mode else { panic!("create mode") };
        assert!(!share_ipc && !share_uts, "the default spec asks for new ones");
    }

    #[test]
    fn files_the_spec_mounts_are_not_written_and_a_hostname_needs_uts() {
        use oci_spec::runtime::MountBuilder;
        let mut spec = Spec::default();
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for f in ["/etc/resolv.conf", "/etc//hosts"] {
            let m = MountBuilder::default()
                .destination(f)
                .source("/host/file")
                .typ("bind")
                .options(vec!["rbind".into(), "ro".into()]);
            mounts.push(m.build().expect("mount"));
        }
        spec.set_mounts(Some(mounts));
        let files = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"].map(|f| (f.to_string(), "x".to_string()));
        let cfg = for_create(&spec, Path::new("/r"), None, files.to_vec()).expect("config");
        let Mode::Create { files, .. } = &cfg.mode else { panic!("create mode") };
        assert_eq!(files.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["/etc/hostname"]);

        let mut spec = Spec::default();
        spec.set_hostname(Some("box".into()));
        assert!(for_create(&spec, Path::new("/r"), None, vec![]).is_ok(), "the default spec has a UTS namespace");
        let mut linux = spec.linux().clone().expect("linux");
        let ns = linux.namespaces().clone().unwrap_or_default();
        linux.set_namespaces(Some(ns.into_iter().filter(|n| n.typ() != LinuxNamespaceType::Uts).collect()));
        spec.set_linux(Some(linux));
        assert_eq!(for_create(&spec, Path::new("/r"), None, vec![]), Err(ConfigError::HostnameWithoutUts));
        spec.set_hostname(None);
        assert!(for_create(&spec, Path::new("/r"), None, vec![]).is_ok(), "no hostname, no UTS: the VM's");
    }

    #[test]
    fn namespaced_sysctls_become_proc_sys_writes_and_the_rest_is_refused() {
        let with = |pairs: &[(&str, &str)]| {
            let mut spec = Spec::default();
            let mut linux = spec.linux().clone().expect("linux");
            linux.set_sysctl(Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()));
            spec.set_linux(Some(linux));
            for_create(&spec, Path::new("/r"), None, vec![])
        };
        let cfg = with(&[("kernel.shm_rmid_forced", "1"), ("fs.mqueue.msg_max", "100"), ("net/ipv4/ip_forward", "1")])
            .expect("namespaced");
        let Mode::Create { sysctls, .. } = &cfg.mode else { panic!("create mode") };
        assert_eq!(
            sysctls,
            &[
                ("/proc/sys/fs/mqueue/msg_max".to_string(), "100".to_string()),
                ("/proc/sys/kernel/shm_rmid_forced".into(), "1".into()),
                ("/proc/sys/net/ipv4/ip_forward".into(), "1".into()),
            ]
        );
        for bad in ["kernel.pid_max", "vm.overcommit_memory", "../../etc/passwd", "net..x", "kernel.shm_rmid_forced\n"]
        {
            let e = with(&[(bad, "1")]).expect_err(bad);
            assert!(matches!(e, ConfigError::Sysctl(..)), "{bad}: {e}");
        }
        assert!(with(&[("kernel.hostname", "x")]).is_ok(), "the default spec has its own UTS namespace");
        assert!(with(&[("net.core.somaxconn", "1\n2")]).is_err(), "one value, one line");
    }

    #[test]
    fn a_user_namespace_needs_mappings_and_binds_sysfs_and_cgroup() {
        use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceBuilder};
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().expect("linux");
        let mut ns = linux.namespaces().clone().expect("ns");
        ns.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User).build().expect("ns"));
        linux.set_namespaces(Some(ns));
        spec.set_linux(Some(linux.clone()));
        let e = for_create(&spec, Path::new("/r"), None, vec![]).expect_err("no maps");
        assert_eq!(e.to_string(), "user namespace: uidMappings must have 1-340 non-empty entries");
        let map = LinuxIdMappingBuilder::default().container_id(0u32).host_id(1000u32).size(10u32).build().expect("m");
        linux.set_uid_mappings(Some(vec![map]));
        linux.set_gid_mappings(Some(vec![map]));
        spec.set_linux(Some(linux));
        let cfg = for_create(&spec, Path::new("/r"), None, vec![]).expect("config");
        let u = cfg.user_ns.as_ref().expect("user ns");
        assert_eq!(UserNs::map_text(&u.uid_map), "0 1000 10\n");
        let Mode::Create { mounts, .. } = &cfg.mode else { panic!("create mode") };
        let sys = mounts.iter().find(|m| m.destination == "/sys").expect("/sys");
        assert_eq!((sys.source.as_str(), sys.fstype.as_str()), ("/sys", ""));
        assert!(MsFlags::from_bits_truncate(sys.flags).contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY));
    }

    #[test]
    fn specs_without_a_runnable_process_or_with_escaping_mounts_are_refused() {
        let mut spec = Spec::default();
        spec.set_process(None);
        assert_eq!(for_create(&spec, Path::new("/r"), None, vec![]), Err(ConfigError::NoProcess));
        let spec = Spec::default();
        let mut p = spec.process().clone().expect("process");
        p.set_args(Some(vec![]));
        assert_eq!(for_exec(&p, 1, None, None, None), Err(ConfigError::NoArgs));
        let mut spec = Spec::default();
        let mut p = spec.process().clone().expect("process");
        p.set_args(Some(vec!["sh".into()]));
        spec.set_process(Some(p));
        let mut mounts = spec.mounts().clone().expect("mounts");
        mounts[0].set_destination("/../../host".into());
        spec.set_mounts(Some(mounts));
        assert!(matches!(for_create(&spec, Path::new("/r"), None, vec![]), Err(ConfigError::BadPath(_))));
    }
}
