//! The template a pod's configuration lacked, made by a detached copy of this binary
//! (a [`MakeTemplateJob`]): the shim of a short task is gone long before a template is
//! made, and a template is the next pod's, not this one's.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;

use isola_sandbox::sandbox::{make_template, MakeError, NetworkMode};

use crate::boot_request::{self, host, BootRequest};

/// A maker's job ([`isola_sandbox::background`]): the pod's size and configuration
/// file, and whether it has an interface (the template needs the net device then).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MakeTemplateJob {
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u8>,
    pub config_path: Option<PathBuf>,
    pub net: bool,
}

impl isola_sandbox::background::Job for MakeTemplateJob {
    const NAME: &'static str = "make-template";
}

impl MakeTemplateJob {
    /// What a maker for `r`'s configuration is asked: nothing of the pod's identity.
    pub fn for_request(r: &BootRequest) -> Self {
        MakeTemplateJob {
            memory_mib: r.memory_mib,
            vcpus: r.vcpus,
            config_path: r.config_path.clone(),
            net: r.netns.is_some(),
        }
    }

    fn request(&self) -> BootRequest {
        BootRequest {
            name: "template".into(),
            hostname: "template".into(),
            memory_mib: self.memory_mib,
            vcpus: self.vcpus,
            config_path: self.config_path.clone(),
            ..BootRequest::default()
        }
    }
}

/// Starts a maker for `r`'s configuration, as the shim boots it.
pub fn spawn(r: &BootRequest) {
    let Ok(exe) = std::env::current_exe() else { return };
    let mut c = isola_sandbox::background::command(exe, &MakeTemplateJob::for_request(r));
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    match c.spawn() {
        // Reaped here while the shim lives; it outlives a shim that ends first.
        Ok(mut child) => drop(std::thread::spawn(move || child.wait())),
        Err(e) => log::warn!("no template is made for the next pod: {e}"),
    }
}

/// The maker's whole life: make the template (or leave it to a maker already at it).
pub fn serve(j: MakeTemplateJob) -> i32 {
    let r = j.request();
    let mut req = boot_request::request(&r, true);
    // A pod's interface: the template has the net device it will restore onto.
    if j.net {
        req.network = NetworkMode::Bridge;
    }
    // Made, not restored from another.
    req.templates = false;
    let made = host(&r).map_err(|e| e.to_string()).and_then(|h| {
        match make_template(&h.place(&req).options, &isola_sandbox::template::root()) {
            Ok(_) | Err(MakeError::Busy(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    });
    isola_sandbox::background::exit_code("making a template", made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maker_is_asked_the_pods_size_and_configuration_and_nothing_of_its_identity() {
        let r = BootRequest {
            name: "pod-7".into(),
            hostname: "web".into(),
            netns: Some("/var/run/netns/cni-1".into()),
            memory_mib: Some(512),
            vcpus: Some(2),
            config_path: Some("/c.toml".into()),
            cgroup_path: Some("kubepods/pod7".into()),
            sysctls: vec![("net.ipv4.ip_forward".into(), "1".into())],
            ..BootRequest::default()
        };
        let j = MakeTemplateJob::for_request(&r);
        assert_eq!((j.memory_mib, j.vcpus, j.net), (Some(512), Some(2), true));
        let made = j.request();
        assert_eq!(
            (made.memory_mib, made.vcpus, made.config_path),
            (Some(512), Some(2), Some(PathBuf::from("/c.toml")))
        );
        assert_eq!((made.name.as_str(), made.hostname.as_str()), ("template", "template"));
        assert!(made.netns.is_none() && made.cgroup_path.is_none() && made.sysctls.is_empty());
    }
}
