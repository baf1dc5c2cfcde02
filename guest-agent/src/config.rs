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
#[path = "config_tests.rs"]
mod tests;
