//! The OCI spec of a container from what a user asked for (`isola run`, benchmarks):
//! the runtime-spec defaults with our process, limits, and the sandbox's network.

use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder, Spec};

use crate::container::ContainerError;

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
    /// The container's seccomp filter (`--security-opt seccomp=`).
    pub seccomp: crate::seccomp::Seccomp,
    /// Capabilities added to the default set (`--cap-add NET_ADMIN`, as Docker takes them).
    pub cap_add: Vec<String>,
    /// The root filesystem is read-only (`--read-only`); writable otherwise, as Docker's.
    pub read_only: bool,
}

/// A capability by Docker's name (`NET_ADMIN`) or the kernel's (`CAP_NET_ADMIN`).
fn capability(name: &str) -> Result<oci_spec::runtime::Capability, ContainerError> {
    let upper = name.to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).parse().map_err(|_| ContainerError::BadCapability(name.to_string()))
}

/// Adds `names` to the bounding, effective and permitted sets (never ambient).
fn add_capabilities(p: &mut oci_spec::runtime::Process, names: &[String]) -> Result<(), ContainerError> {
    if names.is_empty() {
        return Ok(());
    }
    let add: Vec<_> = names.iter().map(|n| capability(n)).collect::<Result<_, _>>()?;
    let mut caps = p.capabilities().clone().unwrap_or_default();
    let extend = |set: &Option<oci_spec::runtime::Capabilities>| {
        let mut set = set.clone().unwrap_or_default();
        set.extend(add.iter().copied());
        Some(set)
    };
    caps.set_bounding(extend(caps.bounding()));
    caps.set_effective(extend(caps.effective()));
    caps.set_permitted(extend(caps.permitted()));
    p.set_capabilities(Some(caps));
    Ok(())
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
    add_capabilities(&mut p, &o.cap_add)?;
    spec.set_process(Some(p));
    spec.set_hostname(o.hostname.clone());
    // oci-spec's default root is read-only (runc's `spec` template); Docker's is not.
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_readonly(Some(o.read_only));
    spec.set_root(Some(root));
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
    linux.set_seccomp(o.seccomp.profile().map_err(|e| ContainerError::Spec(e.to_string()))?);
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Just the process of [`spec`] (for `exec`).
pub fn process(o: &ContainerOptions) -> Result<oci_spec::runtime::Process, ContainerError> {
    spec(o)?.process().clone().ok_or_else(|| ContainerError::Spec("default spec has no process".into()))
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
        assert_eq!(s.root().as_ref().and_then(|r| r.readonly()), Some(false), "writable unless --read-only");
        let s = spec(&ContainerOptions { read_only: true, ..o }).expect("spec");
        assert_eq!(s.root().as_ref().and_then(|r| r.readonly()), Some(true));
    }

    #[test]
    fn bad_options_are_named() {
        assert!(matches!(spec(&ContainerOptions::default()), Err(ContainerError::NoCommand)));
        let o = ContainerOptions { args: vec!["sh".into()], env: vec!["NOEQUALS".into()], ..Default::default() };
        assert_eq!(spec(&o).expect_err("env").to_string(), "invalid --env \"NOEQUALS\": expected KEY=VALUE");
        let o = ContainerOptions { args: vec!["sh".into()], cap_add: vec!["NET_FLY".into()], ..Default::default() };
        assert!(spec(&o).expect_err("cap").to_string().contains("NET_FLY"));
    }

    #[test]
    fn added_capabilities_join_every_set_but_ambient() {
        use oci_spec::runtime::Capability;
        let o = ContainerOptions {
            args: vec!["sh".into()],
            cap_add: vec!["NET_ADMIN".into(), "cap_net_raw".into()],
            ..Default::default()
        };
        let s = spec(&o).expect("spec");
        let c = s.process().as_ref().and_then(|p| p.capabilities().clone()).expect("caps");
        for set in [c.bounding(), c.effective(), c.permitted()] {
            let set = set.as_ref().expect("set");
            assert!(set.contains(&Capability::NetAdmin) && set.contains(&Capability::NetRaw), "{set:?}");
            assert!(set.contains(&Capability::Kill), "defaults kept: {set:?}");
        }
        assert!(c.ambient().as_ref().is_none_or(|a| !a.contains(&Capability::NetAdmin)));
    }
}
