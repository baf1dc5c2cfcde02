//! `containerd-shim-isola-v2 -info` as containerd 2.x runs it at start-up: no
//! namespace, no TTRPC_ADDRESS, options on stdin, RuntimeInfo on stdout.

use std::io::Write;
use std::process::{Command, Stdio};

use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::types::introspection::RuntimeInfo;

fn shim() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_containerd-shim-isola-v2"));
    c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

#[test]
fn info_answers_runtime_info_with_the_oci_features_without_a_namespace() {
    let mut child = shim().arg("-info").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("run the shim");
    // Some options bytes, as containerd sends (runc's shim reads its BinaryName there).
    child.stdin.take().expect("stdin").write_all(b"\x0a\x04runc").expect("write options");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info = RuntimeInfo::parse_from_bytes(&out.stdout).expect("a RuntimeInfo protobuf on stdout");
    assert_eq!(info.name, "io.containerd.isola.v2");
    assert!(!info.version.version.is_empty(), "a version");
    let features = info.features.as_ref().expect("features");
    assert_eq!(features.type_url, "types.containerd.io/opencontainers/runtime-spec/1/features/Features");
    let f: oci_spec::runtime::Features = serde_json::from_slice(&features.value).expect("OCI features JSON");
    assert_eq!(f.oci_version_min(), "1.0.0");
    let linux = f.linux().as_ref().expect("linux features");
    assert_eq!(linux.seccomp().as_ref().and_then(|s| *s.enabled()), Some(true));
    assert!(f.mount_options().iter().flatten().any(|o| o == "rslave"), "{:?}", f.mount_options());
}

#[test]
fn v_prints_the_version_without_a_namespace() {
    let out = shim().arg("-v").output().expect("run the shim");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("io.containerd.isola.v2") && text.contains("Version: "), "{text}");
}
