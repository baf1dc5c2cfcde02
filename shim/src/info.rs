//! `-info` and `-v`: answered before containerd-shim's bootstrap, which would demand
//! a namespace and containerd's environment that containerd 2.x does not give them.

use std::io::{Read, Write};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::types::introspection::{RuntimeInfo, RuntimeVersion};

/// The runtime name containerd knows this shim by (`--runtime`, `runtime_type`).
pub const RUNTIME_ID: &str = "io.containerd.isola.v2";
/// containerd's type URL for the OCI features document (JSON inside the Any).
pub const FEATURES_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";
/// containerd sends the runtime options on stdin; more than this is not options.
const MAX_OPTIONS: u64 = 1 << 20;

pub fn version() -> String {
    format!("{RUNTIME_ID}:\n  Version: {}\n", env!("CARGO_PKG_VERSION"))
}

/// The RuntimeInfo message: name, version, and the features as containerd reads them.
pub fn runtime_info() -> Result<RuntimeInfo, serde_json::Error> {
    let mut features = Any::new();
    features.type_url = FEATURES_TYPE_URL.into();
    features.value = serde_json::to_vec(&isola_sandbox::features::oci_features())?;
    let mut version = RuntimeVersion::new();
    version.version = env!("CARGO_PKG_VERSION").into();
    let mut info = RuntimeInfo::new();
    info.name = RUNTIME_ID.into();
    info.version = Some(version).into();
    info.features = Some(features).into();
    Ok(info)
}

/// `-info`: reads (and ignores: they change nothing here) the options on stdin,
/// writes RuntimeInfo to stdout. Returns the exit code.
pub fn serve_info() -> i32 {
    let mut options = Vec::new();
    let _ = std::io::stdin().take(MAX_OPTIONS).read_to_end(&mut options);
    match write_info() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: -info: {e}");
            1
        }
    }
}

fn write_info() -> Result<(), String> {
    let bytes = runtime_info().map_err(|e| e.to_string())?.write_to_bytes().map_err(|e| e.to_string())?;
    std::io::stdout().write_all(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_info_round_trips_with_the_features_json() {
        let bytes = runtime_info().expect("info").write_to_bytes().expect("encode");
        let back = RuntimeInfo::parse_from_bytes(&bytes).expect("decode");
        assert_eq!(back.name, RUNTIME_ID);
        let f = back.features.as_ref().expect("features");
        assert_eq!(f.type_url, FEATURES_TYPE_URL);
        let doc: serde_json::Value = serde_json::from_slice(&f.value).expect("JSON inside");
        assert_eq!(doc["ociVersionMin"], "1.0.0");
        assert_eq!(doc["linux"]["cgroup"]["v2"], true);
    }
}
