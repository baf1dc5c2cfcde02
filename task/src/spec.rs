//! What the shim reads from a container's OCI spec and containerd's options: which pod
//! it belongs to (CRI annotations), its network namespace, the VM size it asks for, and
//! where its cgroup goes.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// The role a task plays in its pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The CRI sandbox ("pause") container: it is the VM itself; no guest process.
    PodSandbox,
    /// A container in the CRI pod named here.
    InPod,
    /// A container of its own (`ctr run`): its own VM.
    Standalone,
}

/// The role and the pod (VM) id of a container, from its annotations.
pub fn role(spec: &Spec, id: &str) -> (Role, String) {
    let a = spec.annotations().clone().unwrap_or_default();
    match (a.get(CONTAINER_TYPE).map(String::as_str), a.get(SANDBOX_ID)) {
        (Some("sandbox"), _) => (Role::PodSandbox, id.to_string()),
        (Some("container"), Some(pod)) => (Role::InPod, pod.clone()),
        _ => (Role::Standalone, id.to_string()),
    }
}

/// The shim process (and socket) a container goes to: its pod's.
pub fn grouping(spec: &Spec, id: &str) -> String {
    role(spec, id).1
}

/// The sandbox (VM) name for a pod id: CRI ids are 64 hex digits, too long for the
/// unix socket paths under the state directory, so long ids keep a prefix and a hash.
pub fn vm_name(pod_id: &str) -> String {
    if pod_id.len() <= 24 {
        return pod_id.to_string();
    }
    let prefix: String = pod_id.chars().take(15).collect();
    format!("{prefix}-{:08x}", isola_sandbox::names::name_hash(pod_id))
}

/// The VM's hostname for its owning container: the spec's; with neither a hostname
/// nor a UTS namespace of its own (a host-UTS container or pod), the host's, which is
/// what runc's container would show; else the VM's name.
pub fn vm_hostname(spec: &Spec, pod_id: &str, host: impl FnOnce() -> String) -> String {
    if let Some(h) = spec.hostname().clone().filter(|h| !h.is_empty()) {
        return h;
    }
    if isola_protocol::spec_rules::has_uts_namespace(spec) {
        vm_name(pod_id)
    } else {
        host()
    }
}

/// The spec's sysctls, in name order.
pub fn sysctls(spec: &Spec) -> Vec<(String, String)> {
    let mut v: Vec<_> =
        spec.linux().as_ref().and_then(|l| l.sysctl().clone()).unwrap_or_default().into_iter().collect();
    v.sort();
    v
}

/// The network namespace CNI prepared, named by path in the spec.
pub fn netns(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .and_then(|n| n.path().clone())
}

/// (memory MiB, vCPUs) the container's limits ask for.
pub fn vm_size(spec: &Spec) -> (Option<u64>, Option<u8>) {
    let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) else { return (None, None) };
    let mem = r.memory().as_ref().and_then(|m| m.limit()).filter(|l| *l > 0).map(|l| (l as u64).div_ceil(1 << 20));
    let cpus = r.cpu().as_ref().and_then(|c| match (c.quota(), c.period()) {
        (Some(q), Some(p)) if q > 0 && p > 0 => Some(isola_sandbox::placement::vcpus_for(q as f64 / p as f64)),
        _ => None,
    });
    (mem, cpus)
}

/// The spec's `linux.cgroupsPath` below the host's cgroup root (cgroupfs or systemd
/// form), for the VM's processes; none when the spec names none.
pub fn cgroup_path(spec: &Spec) -> Result<Option<PathBuf>, crate::error::TaskError> {
    let Some(p) = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) else { return Ok(None) };
    let p = p.to_string_lossy().into_owned();
    if p.is_empty() {
        return Ok(None);
    }
    host_cgroup(&p).map(Some)
}

/// An OCI `cgroupsPath` (cgroupfs or systemd form) as a path below the host's cgroup root.
pub fn host_cgroup(cgroups_path: &str) -> Result<PathBuf, crate::error::TaskError> {
    isola_sandbox::cgroup::oci_path(cgroups_path).map_err(|e| crate::error::TaskError::InvalidArgument(e.to_string()))
}

/// Reads a bundle's `config.json`, naming what is wrong: the field's path and the bad
/// value (`process.capabilities.bounding[0]: unknown variant `CAP_FLY`…`), where
/// oci-spec's own loader says only "serde failed".
pub fn load(path: &std::path::Path) -> Result<Spec, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde lists every variant it expected (all 41 capabilities): cut that.
        let short = inner.split(", expected one of").next().unwrap_or(&inner).to_string();
        if at == "." {
            short
        } else {
            format!("{at}: {short}")
        }
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_vm_is_named_by_the_spec_else_the_host_without_its_own_uts() {
        let mut spec = Spec::default();
        spec.set_hostname(None);
        assert_eq!(vm_hostname(&spec, "c1", || "node1".into()), "c1", "own UTS namespace, no hostname");
        spec.set_hostname(Some("web".into()));
        assert_eq!(vm_hostname(&spec, "c1", || "node1".into()), "web");
        spec.set_hostname(None);
        let mut linux = spec.linux().clone().expect("linux");
        let ns = linux.namespaces().clone().unwrap_or_default();
        linux.set_namespaces(Some(ns.into_iter().filter(|n| n.typ() != LinuxNamespaceType::Uts).collect()));
        spec.set_linux(Some(linux));
        assert_eq!(vm_hostname(&spec, "c1", || "node1".into()), "node1", "host UTS: the host's name");
    }
    use super::*;
    use oci_spec::runtime::{
        LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxResourcesBuilder,
    };

    fn with_annotations(pairs: &[(&str, &str)]) -> Spec {
        let mut s = Spec::default();
        s.set_annotations(Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()));
        s
    }

    #[test]
    fn a_bad_spec_is_named_by_its_field_and_value() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.json");
        let mut v = serde_json::to_value(Spec::default()).expect("json");
        v["process"]["capabilities"]["bounding"] = serde_json::json!(["CAP_CHOWN", "CAP_FLY"]);
        std::fs::write(&path, v.to_string()).expect("write");
        let e = load(&path).expect_err("unknown capability");
        assert!(e.starts_with("process.capabilities.bounding[1]: ") && e.contains("CAP_FLY"), "{e}");
        assert!(e.len() < 200, "short: {e}");
        std::fs::write(&path, "{").expect("write");
        assert!(load(&path).expect_err("truncated").contains("EOF"));
        assert!(load(&dir.path().join("none")).is_err());
        std::fs::write(&path, serde_json::to_string(&Spec::default()).expect("json")).expect("write");
        assert_eq!(load(&path).expect("a good one"), Spec::default());
    }

    #[test]
    fn cri_annotations_put_containers_in_their_pod() {
        assert_eq!(role(&Spec::default(), "c1"), (Role::Standalone, "c1".into()));
        let sb = with_annotations(&[(CONTAINER_TYPE, "sandbox"), (SANDBOX_ID, "pod1")]);
        assert_eq!(role(&sb, "pod1"), (Role::PodSandbox, "pod1".into()));
        let c = with_annotations(&[(CONTAINER_TYPE, "container"), (SANDBOX_ID, "pod1")]);
        assert_eq!(role(&c, "app"), (Role::InPod, "pod1".into()));
        assert_eq!(grouping(&c, "app"), "pod1");
        // A container that names no pod is on its own.
        let lone = with_annotations(&[(CONTAINER_TYPE, "container")]);
        assert_eq!(role(&lone, "x"), (Role::Standalone, "x".into()));
    }

    #[test]
    fn long_ids_get_short_stable_vm_names() {
        let id = "3f9c1a7e".repeat(8);
        let n = vm_name(&id);
        assert!(n.len() <= 24 && n.starts_with("3f9c1a7e3f9c1a7"), "{n}");
        assert_eq!(n, vm_name(&id));
        assert_ne!(n, vm_name(&"3f9c1a7e".repeat(7)));
        assert_eq!(vm_name("short"), "short");
    }

    #[test]
    fn netns_and_vm_size_come_from_the_spec() {
        let ns = LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path("/var/run/netns/cni-1")
            .build()
            .expect("ns");
        let res = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(100 << 20).build().expect("mem"))
            .cpu(LinuxCpuBuilder::default().quota(150_000i64).period(100_000u64).build().expect("cpu"))
            .build()
            .expect("res");
        let mut s = Spec::default();
        s.set_linux(Some(LinuxBuilder::default().namespaces(vec![ns]).resources(res).build().expect("linux")));
        assert_eq!(netns(&s), Some(PathBuf::from("/var/run/netns/cni-1")));
        assert_eq!(vm_size(&s), (Some(100), Some(2)));
        assert_eq!(netns(&Spec::default()), None);
    }
}
