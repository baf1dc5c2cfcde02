//! Manifests and indexes (OCI and Docker v2 alike): choosing linux/amd64 from an
//! index, and the run settings an image's config implies.

use oci_spec::image::{Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, Os};

/// Accept header for manifest requests: indexes and single manifests, both formats.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("malformed manifest: {0}")]
    Malformed(String),
    #[error("no linux/amd64 image in the index (it has: {0})")]
    NoPlatform(String),
    #[error("the manifest declares {declared} bytes of blobs (at {digest}); the most this store takes is {max}")]
    TooLarge { digest: String, declared: String, max: u64 },
}

/// What a manifest's blobs (config and layers) declare in all, refused past `max`
/// (the store's unpacking limit: a compressed blob is never larger than what it
/// unpacks to) and never overflowing: a hostile manifest's sizes bound nothing else.
pub fn declared_total(m: &ImageManifest, max: u64) -> Result<u64, ManifestError> {
    let mut total = 0u64;
    for d in std::iter::once(m.config()).chain(m.layers()) {
        let sum = total.checked_add(d.size());
        total = sum.filter(|t| *t <= max).ok_or_else(|| ManifestError::TooLarge {
            digest: d.digest().to_string(),
            declared: sum.map_or_else(|| "more than 2^64".to_string(), |t| t.to_string()),
            max,
        })?;
    }
    Ok(total)
}

/// What a manifest request returned.
pub enum Fetched {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

pub fn parse(bytes: &[u8]) -> Result<Fetched, ManifestError> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    let is_index = v.get("manifests").is_some();
    if is_index {
        serde_json::from_value(v)
            .map(|i| Fetched::Index(Box::new(i)))
            .map_err(|e| ManifestError::Malformed(e.to_string()))
    } else {
        if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
            return Err(ManifestError::Malformed("Docker schema 1 manifests are not supported".into()));
        }
        serde_json::from_value(v)
            .map(|m| Fetched::Manifest(Box::new(m)))
            .map_err(|e| ManifestError::Malformed(e.to_string()))
    }
}

/// The linux/amd64 entry of an index.
pub fn select(index: &ImageIndex) -> Result<Descriptor, ManifestError> {
    let fits = |d: &&Descriptor| {
        d.platform().as_ref().is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == Arch::Amd64)
    };
    if let Some(d) = index.manifests().iter().find(fits) {
        return Ok(d.clone());
    }
    let have: Vec<String> = index
        .manifests()
        .iter()
        .map(|d| d.platform().as_ref().map_or("unknown".into(), |p| format!("{}/{}", p.os(), p.architecture())))
        .collect();
    Err(ManifestError::NoPlatform(have.join(", ")))
}

/// What runs, from the image config and what the user gave (user wins, Docker rules:
/// a user command replaces Cmd and keeps Entrypoint; `--entrypoint` replaces
/// Entrypoint and drops the image's Cmd, and `--entrypoint ""` leaves none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSettings {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
}

pub fn run_settings(
    cfg: &ImageConfiguration,
    cmd: &[String],
    entrypoint: Option<&str>,
    env: &[String],
    cwd: Option<&str>,
    user: Option<&str>,
) -> RunSettings {
    let c = cfg.config().as_ref();
    let (entrypoint, image_cmd) = match entrypoint {
        Some(e) => (Some(e.to_string()).filter(|e| !e.is_empty()).into_iter().collect(), Vec::new()),
        None => (
            c.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
            c.and_then(|c| c.cmd().clone()).unwrap_or_default(),
        ),
    };
    let mut args = entrypoint;
    args.extend(if cmd.is_empty() { image_cmd } else { cmd.to_vec() });
    let mut merged: Vec<String> = c.and_then(|c| c.env().clone()).unwrap_or_default();
    for e in env {
        let key = e.split('=').next().unwrap_or_default();
        merged.retain(|m| m.split('=').next() != Some(key));
        merged.push(e.clone());
    }
    if !merged.iter().any(|e| e.starts_with("PATH=")) {
        merged.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let image_cwd = c.and_then(|c| c.working_dir().clone()).filter(|w| !w.is_empty());
    let image_user = c.and_then(|c| c.user().clone()).filter(|u| !u.is_empty());
    RunSettings {
        args,
        env: merged,
        cwd: cwd.map(str::to_string).or(image_cwd),
        user: user.map(str::to_string).or(image_user),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_selection_picks_linux_amd64_or_names_what_exists() {
        let idx = |plats: &[(&str, &str)]| -> ImageIndex {
            let m: Vec<serde_json::Value> = plats
                .iter()
                .enumerate()
                .map(|(i, (os, arch))| {
                    serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": format!("sha256:{}", format!("{i}").repeat(64)), "size": 10,
                        "platform": {"os": os, "architecture": arch}})
                })
                .collect();
            let v = serde_json::json!({"schemaVersion": 2, "manifests": m});
            match parse(v.to_string().as_bytes()).expect("parse") {
                Fetched::Index(i) => *i,
                Fetched::Manifest(_) => panic!("an index"),
            }
        };
        let i = idx(&[("linux", "arm64"), ("linux", "amd64")]);
        assert_eq!(select(&i).expect("amd64").digest().to_string(), format!("sha256:{}", "1".repeat(64)));
        let e = select(&idx(&[("linux", "arm64"), ("windows", "amd64")])).expect_err("none");
        assert_eq!(e.to_string(), "no linux/amd64 image in the index (it has: linux/arm64, windows/amd64)");
        assert!(matches!(parse(br#"{"schemaVersion":1}"#), Err(ManifestError::Malformed(m)) if m.contains("schema 1")));
    }

    /// A hostile manifest's sizes: past the store's limit, or summing past 2^64, are a
    /// named refusal before anything is downloaded (not a panic, not a wrapped total).
    #[test]
    fn declared_sizes_are_bounded_and_never_overflow() {
        let manifest = |sizes: &[u64]| -> ImageManifest {
            let layers: Vec<serde_json::Value> = sizes
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": format!("sha256:{}", format!("{i}").repeat(64)), "size": s})
                })
                .collect();
            let v = serde_json::json!({"schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": format!("sha256:{}", "c".repeat(64)), "size": 100},
                "layers": layers});
            match parse(v.to_string().as_bytes()).expect("parse") {
                Fetched::Manifest(m) => *m,
                Fetched::Index(_) => panic!("a manifest"),
            }
        };
        assert_eq!(declared_total(&manifest(&[10, 20]), 1 << 20), Ok(130));
        let e = declared_total(&manifest(&[10, 2 << 20]), 1 << 20).expect_err("too large");
        assert!(e.to_string().contains(&format!("sha256:{}", "1".repeat(64))), "{e}");
        let e = declared_total(&manifest(&[u64::MAX, u64::MAX]), u64::MAX).expect_err("overflow");
        assert!(e.to_string().contains("more than 2^64"), "{e}");
    }

    #[test]
    fn user_settings_override_the_image_config_docker_style() {
        let cfg: ImageConfiguration = serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["A=1", "PATH=/bin"],
                       "WorkingDir": "/srv", "User": "1000:1000"}
        }))
        .expect("config");
        let s = run_settings(&cfg, &[], None, &[], None, None);
        assert_eq!(s.args, ["/bin/app", "--serve"]);
        assert_eq!((s.cwd.as_deref(), s.user.as_deref()), (Some("/srv"), Some("1000:1000")));
        let s = run_settings(&cfg, &["--once".into()], None, &["A=2".into(), "B=3".into()], Some("/tmp"), Some("0"));
        assert_eq!(s.args, ["/bin/app", "--once"]);
        assert_eq!(s.env, ["PATH=/bin", "A=2", "B=3"]);
        assert_eq!((s.cwd.as_deref(), s.user.as_deref()), (Some("/tmp"), Some("0")));
        // --entrypoint replaces Entrypoint and drops the image's Cmd.
        assert_eq!(run_settings(&cfg, &[], Some("/bin/sh"), &[], None, None).args, ["/bin/sh"]);
        let s = run_settings(&cfg, &["-c".into(), "id".into()], Some("/bin/sh"), &[], None, None);
        assert_eq!(s.args, ["/bin/sh", "-c", "id"]);
        // --entrypoint "": no entrypoint, only the user's command (none: nothing to run).
        assert_eq!(run_settings(&cfg, &["ls".into()], Some(""), &[], None, None).args, ["ls"]);
        assert!(run_settings(&cfg, &[], Some(""), &[], None, None).args.is_empty());
    }
}
