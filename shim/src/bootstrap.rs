//! containerd 2.3's bootstrap protocol for `start`: `BootstrapParams` on stdin, a
//! `BootstrapResult` on stdout (`containerd.runtime.bootstrap.v1`). containerd-shim
//! 0.11 predates it, so the two messages are read and written here, by field number.
//!
//! A containerd that sends these parameters also speaks task API v3, so the reply
//! names the v3 socket. Any other stdin (containerd 1.6/1.7 send runtime options or
//! nothing, 2.0–2.2 nothing) keeps the legacy reply: the bare v2 address.

use std::io::Read;

use containerd_shim::protos::protobuf::rt::WireType;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{CodedInputStream, CodedOutputStream, Message};

/// The most `start` reads from stdin: the parameters are a few hundred bytes, plus
/// runtime options as extensions.
pub const MAX_STDIN: u64 = 1 << 20;

/// What `start` takes from `BootstrapParams`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params {
    pub instance_id: String,
    pub namespace: String,
    pub containerd_version: String,
    /// `ConfigPath` from the runtime options, when an extension carries them.
    pub config_path: Option<std::path::PathBuf>,
}

/// `start`'s stdin, at most [`MAX_STDIN`] bytes (a closed or absent stdin reads as empty).
pub fn read_stdin() -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = std::io::stdin().lock().take(MAX_STDIN).read_to_end(&mut buf);
    buf
}

/// The bootstrap parameters in `input`, if it holds them for this very task.
/// Legacy runtime options can decode as this message too (protobuf skips unknown
/// fields), so the id and namespace must match the command line, as containerd's own
/// shims check.
pub fn parse_params(input: &[u8], cli_id: &str, cli_namespace: &str) -> Option<Params> {
    if input.is_empty() {
        return None;
    }
    let params = decode_params(input)?;
    (params.instance_id == cli_id && params.namespace == cli_namespace).then_some(params)
}

fn decode_params(input: &[u8]) -> Option<Params> {
    let mut is = CodedInputStream::from_bytes(input);
    let mut params = Params::default();
    while let Some(tag) = is.read_raw_tag_or_eof().ok()? {
        let wire = WireType::new(tag & 7)?;
        let field = match (tag >> 3, wire) {
            (1, WireType::LengthDelimited) => &mut params.instance_id,
            (2, WireType::LengthDelimited) => &mut params.namespace,
            (4, WireType::LengthDelimited) => &mut params.containerd_version,
            (8, WireType::LengthDelimited) => {
                let extension = is.read_bytes().ok()?;
                params.config_path = params.config_path.or_else(|| extension_config_path(&extension));
                continue;
            }
            (_, wire) => {
                is.skip_field(wire).ok()?;
                continue;
            }
        };
        *field = is.read_string().ok()?;
    }
    Some(params)
}

/// `ConfigPath` from an `Extension` whose `Any` (field 1) holds containerd's runtime
/// options (`runtimeoptions.v1.Options`).
fn extension_config_path(extension: &[u8]) -> Option<std::path::PathBuf> {
    let mut is = CodedInputStream::from_bytes(extension);
    while let Some(tag) = is.read_raw_tag_or_eof().ok()? {
        if tag == (1 << 3) | 2 {
            let any = Any::parse_from_bytes(&is.read_bytes().ok()?).ok()?;
            let options = any.type_url.ends_with("runtimeoptions.v1.Options");
            return if options { crate::runtime_options::config_path(Some(&any)) } else { None };
        }
        is.skip_field(WireType::new(tag & 7)?).ok()?;
    }
    None
}

/// A `BootstrapResult`: the task API `version`, the shim's `address`, protocol ttrpc.
pub fn encode_result(version: i32, address: &str) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut os = CodedOutputStream::vec(&mut out);
        // Writing into a Vec cannot fail.
        let _ = os.write_int32(1, version);
        let _ = os.write_string(2, address);
        let _ = os.write_string(3, "ttrpc");
        let _ = os.flush();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `BootstrapParams` as containerd 2.3.4 sends it (fields 1–7 and 9).
    fn params_bytes(id: &str, ns: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut os = CodedOutputStream::vec(&mut out);
        os.write_string(1, id).expect("protobuf in memory");
        os.write_string(2, ns).expect("protobuf in memory");
        os.write_enum(3, 2).expect("protobuf in memory");
        os.write_string(4, "v2.3.4").expect("protobuf in memory");
        os.write_string(5, "/run/containerd/containerd.sock.ttrpc").expect("protobuf in memory");
        os.write_string(6, "/run/containerd/containerd.sock").expect("protobuf in memory");
        os.write_string(7, "/usr/bin/containerd").expect("protobuf in memory");
        os.write_string(9, "/run/containerd/s").expect("protobuf in memory");
        os.flush().expect("protobuf in memory");
        drop(os);
        out
    }

    #[test]
    fn containerd_2_3_parameters_are_read() {
        let p = parse_params(&params_bytes("web", "k8s.io"), "web", "k8s.io").expect("parameters");
        assert_eq!(p.containerd_version, "v2.3.4");
        assert_eq!(p.instance_id, "web");
    }

    #[test]
    fn the_config_path_comes_from_a_runtime_options_extension() {
        let mut bytes = params_bytes("web", "k8s.io");
        let options = Any {
            type_url: "type.googleapis.com/runtimeoptions.v1.Options".into(),
            value: vec![0x12, 0x06, b'/', b'i', b'.', b't', b'o', b'm'],
            ..Default::default()
        };
        let other = Any { type_url: "containerd.io/cri.v1.PodSandboxConfig".into(), ..Default::default() };
        for any in [other, options] {
            let mut ext = Vec::new();
            let mut os = CodedOutputStream::vec(&mut ext);
            os.write_bytes(1, &any.write_to_bytes().expect("in memory")).expect("in memory");
            os.flush().expect("in memory");
            drop(os);
            let mut os = CodedOutputStream::vec(&mut bytes);
            os.write_bytes(8, &ext).expect("in memory");
            os.flush().expect("in memory");
        }
        let p = parse_params(&bytes, "web", "k8s.io").expect("parameters");
        assert_eq!(p.config_path.as_deref(), Some(std::path::Path::new("/i.tom")));
        assert_eq!(parse_params(&params_bytes("web", "k8s.io"), "web", "k8s.io").expect("p").config_path, None);
    }

    #[test]
    fn parameters_for_another_task_or_namespace_are_not_taken() {
        assert_eq!(parse_params(&params_bytes("web", "k8s.io"), "db", "k8s.io"), None);
        assert_eq!(parse_params(&params_bytes("web", "k8s.io"), "web", "default"), None);
    }

    #[test]
    fn legacy_stdin_is_not_bootstrap_parameters() {
        assert_eq!(parse_params(b"", "web", "default"), None);
        // runc's Options as 1.6 sends them: field 1 is a bool, not the id.
        assert_eq!(parse_params(&[0x08, 0x01, 0x12, 0x03, b'a', b'b', b'c'], "web", "default"), None);
        // Garbage: a truncated length-delimited field.
        assert_eq!(parse_params(&[0x0a, 0x7f, b'w'], "web", "default"), None);
        assert_eq!(parse_params(&[0x0f, 0x00], "web", "default"), None);
    }

    #[test]
    fn the_result_carries_version_address_and_protocol_by_field_number() {
        let bytes = encode_result(3, "unix:///run/containerd/s/abc-v3");
        let mut is = CodedInputStream::from_bytes(&bytes);
        assert_eq!(is.read_raw_tag_or_eof().expect("protobuf in memory"), Some(1 << 3));
        assert_eq!(is.read_int32().expect("protobuf in memory"), 3);
        assert_eq!(is.read_raw_tag_or_eof().expect("protobuf in memory"), Some((2 << 3) | 2));
        assert_eq!(is.read_string().expect("protobuf in memory"), "unix:///run/containerd/s/abc-v3");
        assert_eq!(is.read_raw_tag_or_eof().expect("protobuf in memory"), Some((3 << 3) | 2));
        assert_eq!(is.read_string().expect("protobuf in memory"), "ttrpc");
        assert_eq!(is.read_raw_tag_or_eof().expect("protobuf in memory"), None);
    }
}
