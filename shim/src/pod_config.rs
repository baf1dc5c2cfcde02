//! What the VM takes from CRI's `PodSandboxConfig` (`runtime.v1`), which containerd 2.x
//! passes in `CreateSandboxRequest.options` when the shim is the pod's sandboxer: the
//! hostname, the cgroup parent and the pod's sysctls. Read by field number (the CRI
//! protos are not in containerd-shim); anything else in the message is skipped.

use containerd_shim::protos::protobuf::rt::WireType;
use containerd_shim::protos::protobuf::CodedInputStream;
pub use isola_task::pod_config::PodConfig;

/// The most of a pod config that is read (a real one is a few KiB).
pub const MAX_BYTES: usize = 1 << 20;
/// The most sysctls taken from one pod.
pub const MAX_SYSCTLS: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PodConfigError {
    #[error("the pod sandbox config is {0} bytes, over the {MAX_BYTES} taken")]
    TooBig(usize),
    #[error("the pod sandbox config is not a PodSandboxConfig message ({0})")]
    Malformed(&'static str),
    #[error("the pod sandbox config sets over {MAX_SYSCTLS} sysctls")]
    TooManySysctls,
}

/// Field tags visited in one message: (field number, wire type).
fn fields(
    bytes: &[u8],
    mut visit: impl FnMut(u32, &mut CodedInputStream) -> Result<bool, PodConfigError>,
) -> Result<(), PodConfigError> {
    let mut is = CodedInputStream::from_bytes(bytes);
    while let Some(tag) = is.read_raw_tag_or_eof().map_err(|_| PodConfigError::Malformed("a bad tag"))? {
        let wire = WireType::new(tag & 7).ok_or(PodConfigError::Malformed("an unknown wire type"))?;
        let taken = wire == WireType::LengthDelimited && visit(tag >> 3, &mut is)?;
        if !taken {
            is.skip_field(wire).map_err(|_| PodConfigError::Malformed("a truncated field"))?;
        }
    }
    Ok(())
}

fn string(is: &mut CodedInputStream) -> Result<String, PodConfigError> {
    is.read_string().map_err(|_| PodConfigError::Malformed("a string that is not UTF-8 or is truncated"))
}

fn bytes(is: &mut CodedInputStream) -> Result<Vec<u8>, PodConfigError> {
    is.read_bytes().map_err(|_| PodConfigError::Malformed("a truncated message"))
}

/// Parses a serialized `PodSandboxConfig`; empty input is an empty config.
pub fn parse(input: &[u8]) -> Result<PodConfig, PodConfigError> {
    if input.len() > MAX_BYTES {
        return Err(PodConfigError::TooBig(input.len()));
    }
    let mut config = PodConfig::default();
    fields(input, |field, is| {
        match field {
            2 => config.hostname = string(is)?,
            // LinuxPodSandboxConfig: cgroup_parent = 1, sysctls = 3 (map entries).
            8 => fields(&bytes(is)?, |field, is| {
                match field {
                    1 => config.cgroup_parent = string(is)?,
                    3 => {
                        let (mut key, mut value) = (String::new(), String::new());
                        fields(&bytes(is)?, |field, is| {
                            match field {
                                1 => key = string(is)?,
                                2 => value = string(is)?,
                                _ => return Ok(false),
                            }
                            Ok(true)
                        })?;
                        if config.sysctls.len() == MAX_SYSCTLS {
                            return Err(PodConfigError::TooManySysctls);
                        }
                        config.sysctls.push((key, value));
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            })?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    config.sysctls.sort();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::CodedOutputStream;

    fn message(write: impl FnOnce(&mut CodedOutputStream)) -> Vec<u8> {
        let mut out = Vec::new();
        let mut os = CodedOutputStream::vec(&mut out);
        write(&mut os);
        os.flush().expect("protobuf in memory");
        drop(os);
        out
    }

    fn pod(sysctls: &[(&str, &str)]) -> Vec<u8> {
        let linux = message(|os| {
            os.write_string(1, "/kubepods/besteffort/pod1").expect("in memory");
            for (k, v) in sysctls {
                let entry = message(|os| {
                    os.write_string(1, k).expect("in memory");
                    os.write_string(2, v).expect("in memory");
                });
                os.write_bytes(3, &entry).expect("in memory");
            }
        });
        message(|os| {
            // metadata (1) and log_directory (3) are skipped.
            os.write_bytes(1, &message(|os| os.write_string(1, "pod1").expect("in memory"))).expect("in memory");
            os.write_string(2, "web-1").expect("in memory");
            os.write_string(3, "/var/log/pods/x").expect("in memory");
            os.write_int32(9, 7).expect("in memory");
            os.write_bytes(8, &linux).expect("in memory");
        })
    }

    #[test]
    fn hostname_cgroup_parent_and_sysctls_are_read() {
        let c = parse(&pod(&[("net.ipv4.ip_forward", "1"), ("kernel.shm_rmid_forced", "1")])).expect("config");
        assert_eq!(c.hostname, "web-1");
        assert_eq!(c.cgroup_parent, "/kubepods/besteffort/pod1");
        assert_eq!(
            c.sysctls,
            vec![("kernel.shm_rmid_forced".into(), "1".into()), ("net.ipv4.ip_forward".into(), "1".into())]
        );
        assert_eq!(parse(&[]).expect("empty"), PodConfig::default());
    }

    #[test]
    fn bad_or_oversized_configs_are_refused_by_name() {
        assert_eq!(
            parse(&[0x12, 0x7f, b'w']),
            Err(PodConfigError::Malformed("a string that is not UTF-8 or is truncated"))
        );
        assert_eq!(parse(&[0x0f]), Err(PodConfigError::Malformed("an unknown wire type")));
        assert_eq!(
            parse(&[0x12, 0x02, 0xff, 0xfe]),
            Err(PodConfigError::Malformed("a string that is not UTF-8 or is truncated"))
        );
        assert_eq!(parse(&vec![0; MAX_BYTES + 1]), Err(PodConfigError::TooBig(MAX_BYTES + 1)));
        let many: Vec<(String, String)> = (0..=MAX_SYSCTLS).map(|i| (format!("k{i}"), "1".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(parse(&pod(&many)), Err(PodConfigError::TooManySysctls));
    }
}
