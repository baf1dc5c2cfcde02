//! Running a container in a sandbox: its OCI spec, its rootfs upload, and bridging
//! its stdio to ours.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use isola_protocol::client::{AgentClient, ClientError};
use isola_protocol::frame::read_frame;
use isola_protocol::{Response, RootfsSource, SandboxConfig, StdioStream};

use crate::state::SandboxState;
use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder, Spec};

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct ContainerOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub terminal: bool,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub hostname: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no command given")]
    NoCommand,
    #[error("invalid --env {0:?}: expected KEY=VALUE")]
    BadEnv(String),
    #[error("building the OCI spec: {0}")]
    Spec(String),
    #[error("rootfs {path}: {reason}")]
    Rootfs { path: String, reason: String },
    #[error(transparent)]
    Agent(#[from] ClientError),
    #[error("invalid volume {0:?}: expected HOST:GUEST[:ro] with absolute paths")]
    BadVolume(String),
    #[error("volumes need the sandbox's shared directory (virtio-fs): install virtiofsd")]
    NoSharedFs,
    #[error(transparent)]
    Mount(#[from] crate::mounts::MountError),
}

/// A host path bound into the container (`-v HOST:GUEST[:ro]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub guest: String,
    pub readonly: bool,
}

impl std::str::FromStr for Volume {
    type Err = ContainerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ContainerError::BadVolume(s.into());
        let mut parts = s.split(':');
        let (host, guest) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        let readonly = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(_) => return Err(bad()),
        };
        if parts.next().is_some() || !host.starts_with('/') || !guest.starts_with('/') || guest.contains("/../") {
            return Err(bad());
        }
        Ok(Volume { host: host.into(), guest: guest.into(), readonly })
    }
}

/// The sandbox's CreateSandbox settings: its hostname, and its virtio-fs share if any.
pub fn sandbox_config(state: &SandboxState, hostname: &str) -> SandboxConfig {
    SandboxConfig {
        hostname: hostname.into(),
        shared_fs_tag: state.shared_dir.as_ref().map(|_| isola_protocol::SHARED_FS_TAG.to_string()),
        network: state.net.as_ref().map(crate::net::NetState::guest_config),
        dns: if state.net.is_some() { crate::net::host_dns() } else { vec![] },
        ..Default::default()
    }
}

/// Makes host directory `dir` the rootfs of container `id`: bound read-only into the
/// sandbox's shared directory when it has one (nothing is copied), else uploaded.
pub fn provide_rootfs(
    client: &AgentClient,
    state: &SandboxState,
    id: &str,
    dir: &Path,
) -> Result<RootfsSource, ContainerError> {
    let Some(shared) = &state.shared_dir else {
        upload_rootfs(client, id, dir)?;
        return Ok(RootfsSource::Upload);
    };
    if !dir.is_dir() {
        return Err(ContainerError::Rootfs { path: dir.display().to_string(), reason: "not a directory".into() });
    }
    crate::mounts::bind(dir, &shared.join(id).join("rootfs"), true)?;
    Ok(RootfsSource::GuestPath { path: format!("{}/{id}/rootfs", isola_protocol::SHARED_DIR) })
}

/// Binds each volume into the shared directory and adds the matching bind mount to `spec`.
pub fn add_volumes(state: &SandboxState, id: &str, spec: &mut Spec, volumes: &[Volume]) -> Result<(), ContainerError> {
    if volumes.is_empty() {
        return Ok(());
    }
    let shared = state.shared_dir.as_ref().ok_or(ContainerError::NoSharedFs)?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (i, v) in volumes.iter().enumerate() {
        crate::mounts::bind(&v.host, &shared.join(id).join("volumes").join(i.to_string()), v.readonly)?;
        let mut options = vec!["rbind".to_string()];
        if v.readonly {
            options.push("ro".into());
        }
        let m = oci_spec::runtime::MountBuilder::default()
            .destination(PathBuf::from(&v.guest))
            .typ("bind")
            .source(PathBuf::from(format!("{}/{id}/volumes/{i}", isola_protocol::SHARED_DIR)))
            .options(options)
            .build()
            .map_err(|e| ContainerError::Spec(e.to_string()))?;
        mounts.push(m);
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// The runtime-spec defaults (mounts, masked paths, capabilities) with our process.
pub fn spec(o: &ContainerOptions) -> Result<Spec, ContainerError> {
    if o.args.is_empty() {
        return Err(ContainerError::NoCommand);
    }
    for e in &o.env {
        if !e.contains('=') || e.starts_with('=') {
            return Err(ContainerError::BadEnv(e.clone()));
        }
    }
    let mut spec = Spec::default();
    let mut p = spec.process().clone().ok_or_else(|| ContainerError::Spec("default spec has no process".into()))?;
    p.set_args(Some(o.args.clone()));
    let mut env = vec![DEFAULT_PATH.to_string()];
    if o.terminal {
        env.push("TERM=xterm".into());
    }
    env.extend(o.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &o.cwd {
        p.set_cwd(cwd.into());
    }
    p.set_terminal(Some(o.terminal));
    let mut user = p.user().clone();
    if let Some(uid) = o.uid {
        user.set_uid(uid);
    }
    if let Some(gid) = o.gid {
        user.set_gid(gid);
    }
    p.set_user(user);
    spec.set_process(Some(p));
    spec.set_hostname(o.hostname.clone());
    let mut res = LinuxResourcesBuilder::default();
    if let Some(m) = o.memory_bytes {
        let mem =
            LinuxMemoryBuilder::default().limit(m as i64).build().map_err(|e| ContainerError::Spec(e.to_string()))?;
        res = res.memory(mem);
    }
    if let Some(c) = o.cpus {
        let cpu = LinuxCpuBuilder::default()
            .quota((c * 100_000.0) as i64)
            .period(100_000u64)
            .build()
            .map_err(|e| ContainerError::Spec(e.to_string()))?;
        res = res.cpu(cpu);
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_resources(Some(res.build().map_err(|e| ContainerError::Spec(e.to_string()))?));
    // The network namespace is the sandbox's (the VM's), shared by the pod.
    if let Some(ns) = linux.namespaces().clone() {
        linux.set_namespaces(Some(
            ns.into_iter().filter(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Network).collect(),
        ));
    }
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Sends the directory tree `dir` as container `id`'s rootfs.
pub fn upload_rootfs(client: &AgentClient, id: &str, dir: &Path) -> Result<(), ContainerError> {
    let rootfs_err = |reason: String| ContainerError::Rootfs { path: dir.display().to_string(), reason };
    if !dir.is_dir() {
        return Err(rootfs_err("not a directory".into()));
    }
    let mut conn = client.upload_rootfs(id)?;
    {
        let mut b = tar::Builder::new(&mut conn);
        b.follow_symlinks(false);
        b.append_dir_all(".", dir).map_err(|e| rootfs_err(e.to_string()))?;
        b.finish().map_err(|e| rootfs_err(e.to_string()))?;
    }
    match read_frame::<Response, _>(&mut conn).map_err(ClientError::from)? {
        Response::Ok => Ok(()),
        Response::Error(e) => Err(rootfs_err(e.message)),
        other => Err(ClientError::Unexpected(Box::new(other)).into()),
    }
}

/// Background copies between our stdio and a process's streams.
pub struct Bridges {
    outputs: Vec<JoinHandle<()>>,
}

impl Bridges {
    /// Waits until the process's output streams hit EOF (everything was printed).
    pub fn finish(self) {
        for h in self.outputs {
            let _ = h.join();
        }
    }
}

fn copy_out(mut from: UnixStream, mut to: impl Write + Send + 'static) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = to.flush();
        }
    })
}

fn copy_in(mut from: impl Read + Send + 'static, mut to: UnixStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// Attaches the process's streams before it starts: stdout/stderr (or its terminal)
/// to ours, and our stdin to its stdin when `stdin` is set.
pub fn attach(
    client: &AgentClient,
    id: &str,
    exec_id: Option<&str>,
    terminal: bool,
    stdin: bool,
) -> Result<Bridges, ContainerError> {
    if terminal {
        let tty = client.attach(id, exec_id, StdioStream::Tty)?;
        let input = tty.try_clone().map_err(|e| ContainerError::Agent(ClientError::Frame(e.into())))?;
        if stdin {
            copy_in(std::io::stdin(), input);
        }
        return Ok(Bridges { outputs: vec![copy_out(tty, std::io::stdout())] });
    }
    let out = client.attach(id, exec_id, StdioStream::Stdout)?;
    let err = client.attach(id, exec_id, StdioStream::Stderr)?;
    let input = client.attach(id, exec_id, StdioStream::Stdin)?;
    if stdin {
        copy_in(std::io::stdin(), input);
    } else {
        // No input: the process sees EOF at once rather than waiting forever.
        let _ = input.shutdown(std::net::Shutdown::Write);
    }
    Ok(Bridges { outputs: vec![copy_out(out, std::io::stdout()), copy_out(err, std::io::stderr())] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_carries_args_env_limits_and_no_netns() {
        let o = ContainerOptions {
            args: vec!["sh".into()],
            env: vec!["A=1".into()],
            cwd: Some("/tmp".into()),
            memory_bytes: Some(64 << 20),
            cpus: Some(0.5),
            hostname: Some("h".into()),
            uid: Some(1000),
            ..Default::default()
        };
        let s = spec(&o).expect("spec");
        let p = s.process().as_ref().expect("process");
        assert_eq!(p.args().as_ref().expect("args"), &["sh".to_string()]);
        assert!(p.env().as_ref().expect("env").contains(&"A=1".to_string()));
        assert_eq!(p.cwd().to_str(), Some("/tmp"));
        assert_eq!(p.user().uid(), 1000);
        let l = s.linux().as_ref().expect("linux");
        let r = l.resources().as_ref().expect("resources");
        assert_eq!(r.memory().as_ref().and_then(|m| m.limit()), Some(64 << 20));
        assert_eq!(r.cpu().as_ref().and_then(|c| c.quota()), Some(50_000));
        assert!(l
            .namespaces()
            .as_ref()
            .expect("ns")
            .iter()
            .all(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Network));
    }

    #[test]
    fn volumes_parse_and_bad_ones_are_named() {
        let v: Volume = "/srv/data:/data:ro".parse().expect("volume");
        assert_eq!(v, Volume { host: "/srv/data".into(), guest: "/data".into(), readonly: true });
        let v: Volume = "/a:/b".parse().expect("volume");
        assert!(!v.readonly);
        for bad in ["/a", "a:/b", "/a:b", "/a:/b:rx", "/a:/b:ro:x", "/a:/x/../etc"] {
            let e = bad.parse::<Volume>().expect_err(bad);
            assert!(e.to_string().contains("expected HOST:GUEST[:ro]"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_options_are_named() {
        assert!(matches!(spec(&ContainerOptions::default()), Err(ContainerError::NoCommand)));
        let o = ContainerOptions { args: vec!["sh".into()], env: vec!["NOEQUALS".into()], ..Default::default() };
        assert_eq!(spec(&o).expect_err("env").to_string(), "invalid --env \"NOEQUALS\": expected KEY=VALUE");
    }
}
