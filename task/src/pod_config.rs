//! What a pod's VM takes from CRI's `PodSandboxConfig` when containerd 2.x's sandbox API
//! creates it (the containerd adapter decodes the message), and where its cgroup goes.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodConfig {
    pub hostname: String,
    pub cgroup_parent: String,
    /// In name order.
    pub sysctls: Vec<(String, String)>,
}

/// The VM's `cgroupsPath` as CRI gives a pod sandbox: `parent/id` (cgroupfs), or
/// `parent:cri-containerd:id` under a systemd slice. None without a parent.
pub fn cgroups_path(cgroup_parent: &str, sandbox_id: &str) -> Option<String> {
    if cgroup_parent.is_empty() {
        None
    } else if cgroup_parent.ends_with(".slice") {
        Some(format!("{cgroup_parent}:cri-containerd:{sandbox_id}"))
    } else {
        Some(format!("{}/{sandbox_id}", cgroup_parent.trim_end_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vms_cgroup_is_named_as_cri_names_a_sandboxs() {
        assert_eq!(cgroups_path("", "s1"), None);
        assert_eq!(cgroups_path("/kubepods/pod1/", "s1").as_deref(), Some("/kubepods/pod1/s1"));
        assert_eq!(cgroups_path("kubepods-pod1.slice", "s1").as_deref(), Some("kubepods-pod1.slice:cri-containerd:s1"));
    }
}
