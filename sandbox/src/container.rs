//! A container in a running sandbox, as every host caller (CLI, benchmarks, shim) uses
//! it: created with its rootfs and volumes applied, then started, waited for, signalled,
//! exec'd into, attached to and deleted through typed agent calls.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use isola_protocol::client::ClientError;
use isola_protocol::frame::read_frame;
use isola_protocol::{ContainerStats, ExitStatus, Response, RootfsSource, StdioStream};
use oci_spec::runtime::{LinuxResources, Process, Spec};

use crate::agent::Agent;
use crate::volume::{self, Volume};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no command given")]
    NoCommand,
    #[error("invalid --env {0:?}: expected KEY=VALUE")]
    BadEnv(String),
    #[error("unknown capability {0:?} (names as in capabilities(7), e.g. NET_ADMIN)")]
    BadCapability(String),
    #[error("building the OCI spec: {0}")]
    Spec(String),
    #[error("rootfs {path}: {reason}")]
    Rootfs { path: String, reason: String },
    #[error(transparent)]
    Agent(#[from] ClientError),
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    #[error("this rootfs needs the sandbox's shared directory (virtio-fs): install virtiofsd")]
    NoSharedFs,
    #[error(transparent)]
    Mount(#[from] crate::mounts::MountError),
    #[error("streams of {0}: {1}")]
    Stream(String, std::io::Error),
}

/// Where a container's root filesystem comes from.
#[derive(Clone, Copy, Debug)]
pub enum Rootfs<'a> {
    /// A host directory: bound read-only into the share (nothing is copied), or uploaded
    /// as a tar stream when the sandbox has no share.
    Dir(&'a Path),
    /// A host directory sent as a tar stream, share or not (the copy stays in the guest).
    Upload(&'a Path),
    /// The caller put the container's own writable layer at `<share>/<id>/rootfs`
    /// already (the task engine mounts containerd's snapshot or the bundle's rootfs
    /// there): the container writes in it, as under runc.
    InShare,
    /// A disk the sandbox was given ([`crate::options::DiskAttach`]), by its serial: an
    /// image's filesystem under an overlay of the container's own, or (`in_place`) the
    /// container's own writable layer.
    Disk { serial: &'a str, fstype: &'a str, in_place: bool },
}

/// A process's streams, attached before it starts so nothing is lost.
pub enum Streams {
    /// Both directions of its terminal.
    Tty(UnixStream),
    Pipes {
        stdin: UnixStream,
        stdout: UnixStream,
        stderr: UnixStream,
    },
}

/// One process of a container: its init, or one added by [`Container::exec`].
#[derive(Clone)]
pub struct ProcessHandle {
    agent: Agent,
    id: String,
    exec_id: Option<String>,
}

impl ProcessHandle {
    fn exec_id(&self) -> Option<&str> {
        self.exec_id.as_deref()
    }

    /// Lets the process run; returns its pid in the guest.
    pub fn start(&self) -> Result<i32, ContainerError> {
        Ok(self.agent.call(|c| c.start(&self.id, self.exec_id()))?)
    }

    /// Blocks until the process exits (on a connection of its own).
    pub fn wait(&self) -> Result<ExitStatus, ContainerError> {
        Ok(self.agent.wait(&self.id, self.exec_id())?)
    }

    /// `all`: every process in the container's cgroup, not only this one.
    pub fn signal(&self, signal: i32, all: bool) -> Result<(), ContainerError> {
        Ok(self.agent.call(|c| c.signal(&self.id, self.exec_id(), signal, all))?)
    }

    pub fn stream(&self, stream: StdioStream) -> Result<UnixStream, ContainerError> {
        Ok(self.agent.attach(&self.id, self.exec_id(), stream)?)
    }

    /// Every stream of the process: its terminal, or stdin, stdout and stderr.
    pub fn attach(&self, terminal: bool) -> Result<Streams, ContainerError> {
        if terminal {
            return Ok(Streams::Tty(self.stream(StdioStream::Tty)?));
        }
        Ok(Streams::Pipes {
            stdout: self.stream(StdioStream::Stdout)?,
            stderr: self.stream(StdioStream::Stderr)?,
            stdin: self.stream(StdioStream::Stdin)?,
        })
    }

    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), ContainerError> {
        Ok(self.agent.call(|c| c.resize_tty(&self.id, self.exec_id(), rows, cols))?)
    }

    pub fn close_stdin(&self) -> Result<(), ContainerError> {
        Ok(self.agent.call(|c| c.close_stdin(&self.id, self.exec_id()))?)
    }

    /// The last `max_bytes` it printed while nothing was attached.
    pub fn logs(&self, max_bytes: u32) -> Result<String, ContainerError> {
        Ok(self.agent.call(|c| c.logs(&self.id, self.exec_id(), max_bytes))?)
    }
}

/// A container in a sandbox. Dropping the handle leaves the container as it is.
#[derive(Clone)]
pub struct Container {
    agent: Agent,
    id: String,
    shared: Option<PathBuf>,
}

impl Container {
    /// A handle on container `id`, which exists already.
    pub fn existing(agent: Agent, shared: Option<PathBuf>, id: &str) -> Self {
        Container { agent, id: id.into(), shared }
    }

    /// Creates container `id` from `spec`: the rootfs and `volumes` go into the share
    /// (bind mounts added to the spec), then the agent prepares it; its init waits for
    /// [`Container::start`]. On failure nothing of it is left on the host.
    pub fn create(
        agent: Agent,
        shared: Option<PathBuf>,
        id: &str,
        mut spec: Spec,
        rootfs: Rootfs<'_>,
        volumes: &[Volume],
    ) -> Result<Self, ContainerError> {
        let c = Container { agent, id: id.into(), shared };
        let result = (|| -> Result<i32, ContainerError> {
            let source = c.provide_rootfs(rootfs)?;
            volume::add_volumes(c.shared.as_deref(), id, &mut spec, volumes)?;
            Ok(c.agent.call(|a| a.create_container(id, spec, source))?)
        })();
        match result {
            Ok(_pid) => Ok(c),
            Err(e) => {
                if let (Some(shared), Rootfs::Dir(_) | Rootfs::Upload(_)) = (&c.shared, rootfs) {
                    volume::release(shared, id);
                }
                Err(e)
            }
        }
    }

    fn provide_rootfs(&self, rootfs: Rootfs<'_>) -> Result<RootfsSource, ContainerError> {
        let path = volume::guest_path(&self.id, "rootfs");
        let dir = match rootfs {
            Rootfs::InShare if self.shared.is_some() => return Ok(RootfsSource::GuestPath { path, in_place: true }),
            Rootfs::InShare => return Err(ContainerError::NoSharedFs),
            Rootfs::Disk { serial, fstype, in_place } => {
                return Ok(RootfsSource::Disk { serial: serial.into(), fstype: fstype.into(), in_place })
            }
            Rootfs::Dir(dir) | Rootfs::Upload(dir) => dir,
        };
        if !dir.is_dir() {
            return Err(ContainerError::Rootfs { path: dir.display().to_string(), reason: "not a directory".into() });
        }
        match &self.shared {
            Some(shared) if matches!(rootfs, Rootfs::Dir(_)) => {
                crate::mounts::bind(dir, shared, &Path::new(&self.id).join("rootfs"), true)?;
                Ok(RootfsSource::GuestPath { path, in_place: false })
            }
            _ => {
                self.upload_rootfs(dir)?;
                Ok(RootfsSource::Upload)
            }
        }
    }

    /// Sends the directory tree `dir` as the container's rootfs.
    fn upload_rootfs(&self, dir: &Path) -> Result<(), ContainerError> {
        let rootfs_err = |reason: String| ContainerError::Rootfs { path: dir.display().to_string(), reason };
        let mut conn = self.agent.connect()?.upload_rootfs(&self.id)?;
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

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its init process.
    pub fn init(&self) -> ProcessHandle {
        ProcessHandle { agent: self.agent.clone(), id: self.id.clone(), exec_id: None }
    }

    /// Process `exec_id`, added by an earlier [`Container::exec`].
    pub fn process(&self, exec_id: &str) -> ProcessHandle {
        ProcessHandle { agent: self.agent.clone(), id: self.id.clone(), exec_id: Some(exec_id.into()) }
    }

    pub fn start(&self) -> Result<i32, ContainerError> {
        self.init().start()
    }

    pub fn wait(&self) -> Result<ExitStatus, ContainerError> {
        self.init().wait()
    }

    pub fn signal(&self, signal: i32, all: bool) -> Result<(), ContainerError> {
        self.init().signal(signal, all)
    }

    pub fn attach(&self, terminal: bool) -> Result<Streams, ContainerError> {
        self.init().attach(terminal)
    }

    pub fn logs(&self, max_bytes: u32) -> Result<String, ContainerError> {
        self.init().logs(max_bytes)
    }

    /// Adds `process` to the running container as `exec_id`; it waits for its `start`.
    pub fn exec(&self, exec_id: &str, process: Process) -> Result<ProcessHandle, ContainerError> {
        self.agent.call(|c| c.exec(&self.id, exec_id, process))?;
        Ok(self.process(exec_id))
    }

    pub fn stats(&self) -> Result<ContainerStats, ContainerError> {
        Ok(self.agent.call(|c| c.stats(&self.id))?)
    }

    /// Replaces the container's cgroup limits.
    pub fn update(&self, resources: LinuxResources) -> Result<(), ContainerError> {
        Ok(self.agent.call(|c| c.update(&self.id, resources))?)
    }

    pub fn set_paused(&self, paused: bool) -> Result<(), ContainerError> {
        Ok(self.agent.call(|c| c.set_paused(&self.id, paused))?)
    }

    /// Removes the container from the guest (killing it first when `force`), then its
    /// rootfs and volume binds from the share.
    pub fn delete(&self, force: bool) -> Result<(), ContainerError> {
        self.agent.call(|c| c.delete(&self.id, force))?;
        if let Some(shared) = &self.shared {
            volume::release(shared, &self.id);
        }
        Ok(())
    }
}
