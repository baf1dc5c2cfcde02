//! The sandbox's shared (virtio-fs) directory as containers use it: each container's
//! rootfs and volumes are bound under `<share>/<id>/`, which the guest sees under
//! [`isola_protocol::SHARED_DIR`]; and `-v HOST:GUEST[:ro]` volumes.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid volume {0:?}: expected HOST:GUEST[:ro] with absolute paths")]
    Bad(String),
    #[error("volumes need the sandbox's shared directory (virtio-fs): install virtiofsd")]
    NoSharedFs,
    #[error("volume mount for {0}: {1}")]
    Spec(String, String),
    #[error(transparent)]
    Mount(#[from] crate::mounts::MountError),
}

/// Where container `id`'s files live in the share, on the host.
pub fn container_dir(shared: &Path, id: &str) -> PathBuf {
    shared.join(id)
}

/// The guest's path of `rel` under container `id`'s directory in the share.
pub fn guest_path(id: &str, rel: &str) -> String {
    format!("{}/{id}/{rel}", isola_protocol::SHARED_DIR)
}

/// Unmounts and removes everything of container `id` under the share.
pub fn release(shared: &Path, id: &str) {
    if let Err(e) = crate::mounts::unmount_and_remove(&container_dir(shared, id)) {
        log::warn!("releasing the share of container {id}: {e}");
    }
}

/// A host path bound into the container (`-v HOST:GUEST[:ro]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub guest: String,
    pub readonly: bool,
}

impl std::str::FromStr for Volume {
    type Err = VolumeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VolumeError::Bad(s.into());
        let mut parts = s.split(':');
        let (host, guest) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        let readonly = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(_) => return Err(bad()),
        };
        if parts.next().is_some() || !host.starts_with('/') || !guest.starts_with('/') || guest.contains("/../") {
            return Err(bad());
        }
        Ok(Volume { host: host.into(), guest: guest.into(), readonly })
    }
}

/// Binds each volume into the shared directory and adds the matching bind mount to `spec`.
pub fn add_volumes(shared: Option<&Path>, id: &str, spec: &mut Spec, volumes: &[Volume]) -> Result<(), VolumeError> {
    if volumes.is_empty() {
        return Ok(());
    }
    let shared = shared.ok_or(VolumeError::NoSharedFs)?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (i, v) in volumes.iter().enumerate() {
        let rel = Path::new(id).join("volumes").join(i.to_string());
        crate::mounts::bind(&v.host, shared, &rel, v.readonly)?;
        let mut options = vec!["rbind".to_string()];
        if v.readonly {
            options.push("ro".into());
        }
        let m = oci_spec::runtime::MountBuilder::default()
            .destination(PathBuf::from(&v.guest))
            .typ("bind")
            .source(PathBuf::from(guest_path(id, &format!("volumes/{i}"))))
            .options(options)
            .build()
            .map_err(|e| VolumeError::Spec(v.guest.clone(), e.to_string()))?;
        mounts.push(m);
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_parse_and_bad_ones_are_named() {
        let v: Volume = "/srv/data:/data:ro".parse().expect("volume");
        assert_eq!(v, Volume { host: "/srv/data".into(), guest: "/data".into(), readonly: true });
        let v: Volume = "/a:/b".parse().expect("volume");
        assert!(!v.readonly);
        for bad in ["/a", "a:/b", "/a:b", "/a:/b:rx", "/a:/b:ro:x", "/a:/x/../etc"] {
            let e = bad.parse::<Volume>().expect_err(bad);
            assert!(e.to_string().contains("expected HOST:GUEST[:ro]"), "{bad}: {e}");
        }
    }
}
