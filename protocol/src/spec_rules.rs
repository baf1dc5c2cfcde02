//! Rules about an OCI spec that both sides apply: the agent to a container, the host's
//! task engine to a pod sandbox (which has no process in the guest). One home, so the
//! two cannot drift.

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The spec asks for a UTS namespace of its own (new or joined).
pub fn has_uts_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Uts))
}

/// As runc: a hostname without a UTS namespace would rename the whole machine (here,
/// the VM every container of the pod shares). `Some(reason)` when the spec does that.
pub fn hostname_without_uts(spec: &Spec) -> Option<&'static str> {
    let named = spec.hostname().as_ref().is_some_and(|h| !h.is_empty());
    (named && !has_uts_namespace(spec)).then_some("hostname requires a new UTS namespace")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostname_needs_a_uts_namespace() {
        let mut spec = Spec::default();
        spec.set_hostname(Some("web".into()));
        assert_eq!(hostname_without_uts(&spec), None, "the default spec has one");
        let mut linux = spec.linux().clone().expect("linux");
        let ns = linux.namespaces().clone().unwrap_or_default();
        linux.set_namespaces(Some(ns.into_iter().filter(|n| n.typ() != LinuxNamespaceType::Uts).collect()));
        spec.set_linux(Some(linux));
        assert!(!has_uts_namespace(&spec));
        assert!(hostname_without_uts(&spec).is_some());
        spec.set_hostname(Some(String::new()));
        assert_eq!(hostname_without_uts(&spec), None, "an empty hostname is none");
    }
}
