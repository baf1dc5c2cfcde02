//! containerd's runtime options for a task (`runtimeoptions.v1.Options`), as protobuf.

use std::path::PathBuf;

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::CodedInputStream;

/// `ConfigPath` from containerd's runtime options (`runtimeoptions.v1.Options`, field 2),
/// which CRI passes to non-runc runtimes.
pub fn config_path(options: Option<&Any>) -> Option<PathBuf> {
    let any = options?;
    let mut input = CodedInputStream::from_bytes(&any.value);
    while let Ok(Some(tag)) = input.read_raw_tag_or_eof() {
        let (field, wire) = (tag >> 3, tag & 7);
        match (field, wire) {
            (2, 2) => return input.read_string().ok().filter(|s| !s.is_empty()).map(PathBuf::from),
            (_, 0) => input.read_uint64().ok()?,
            (_, 2) => {
                input.read_bytes().ok()?;
                0
            }
            _ => return None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::CodedOutputStream;

    #[test]
    fn config_path_is_read_from_runtime_options() {
        let mut value = Vec::new();
        {
            let mut out = CodedOutputStream::vec(&mut value);
            out.write_string(1, "io.containerd.isola.v2.Options").expect("w");
            out.write_string(2, "/etc/isola/other.toml").expect("w");
            out.flush().expect("flush");
        }
        let any = Any { type_url: "runtimeoptions.v1.Options".into(), value, ..Default::default() };
        assert_eq!(config_path(Some(&any)), Some(PathBuf::from("/etc/isola/other.toml")));
        assert_eq!(config_path(None), None);
        let junk = Any { value: vec![0xff, 0xff, 0xff], ..Default::default() };
        assert_eq!(config_path(Some(&junk)), None);
    }
}
