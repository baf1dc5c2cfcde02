//! What the first container of a pod asks of its VM, and that as a placement request: shared by the booter ([`crate::guest`]) and the detached
//! template maker ([`crate::template_maker`]).

use std::path::PathBuf;

use isola_sandbox::placement::{Host, Request, Vcpus};
use isola_sandbox::sandbox::NetworkMode;

use crate::error::TaskError;

/// What the first container of a pod tells about the VM to boot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BootRequest {
    /// The VM's (sandbox's) name: short, valid as a path component.
    pub name: String,
    pub hostname: String,
    /// The pod's network namespace, when CNI made one.
    pub netns: Option<PathBuf>,
    /// The container's memory limit and CPU count, if it sets them.
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u8>,
    /// `ConfigPath` from containerd's runtime options.
    pub config_path: Option<PathBuf>,
    /// The owning container's `linux.cgroupsPath`, as a path below the host's cgroup
    /// root: the VMM and its helpers run there (in the pod's cgroup under CRI).
    pub cgroup_path: Option<PathBuf>,
    /// The pod sandbox's sysctls (CRI puts a pod's there), for the VM's namespaces.
    pub sysctls: Vec<(String, String)>,
    /// The first container's rootfs when it is a disk (a blockfile snapshot): given to
    /// the VM at boot, as a disk is not added later.
    pub disks: Vec<isola_sandbox::options::DiskAttach>,
    /// Nothing to share over virtio-fs (the rootfs is a disk and the spec binds
    /// nothing): no virtiofsd.
    pub no_share: bool,
}

/// This host, with the configuration the request names (its `ConfigPath`) or the default one.
pub fn host(r: &BootRequest) -> Result<Host, TaskError> {
    Host::load(r.config_path.as_deref()).map_err(|e| TaskError::Config(e.to_string()))
}

/// The sandbox a request asks for, in the host policy's terms ([`isola_sandbox::placement`]).
pub fn request(r: &BootRequest, tie_to_parent: bool) -> Request {
    Request {
        memory_mib: r.memory_mib,
        // A pod's vCPUs come from its CPU limit.
        vcpus: r.vcpus.map(Vcpus::ForLimit),
        // Without a pod namespace a container has loopback only, as with runc.
        network: NetworkMode::None,
        netns: r.netns.clone(),
        hostname: Some(r.hostname.clone()),
        cgroup_path: r.cgroup_path.clone(),
        sysctls: r.sysctls.clone(),
        disks: r.disks.clone(),
        shared_fs: !r.no_share,
        tie_to_parent,
        ..Request::new(r.name.clone())
    }
}
