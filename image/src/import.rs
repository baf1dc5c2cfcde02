//! Importing images without a registry: an OCI image layout directory, an oci-archive
//! (a tar of one), or a docker-archive (`docker save`).

use std::path::{Path, PathBuf};

use oci_spec::image::ImageManifest;

use crate::manifest::{self, Fetched};
use crate::store::{sha256_of, ImageRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {reason}")]
    Bad { path: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
}

fn bad(p: &Path, reason: impl Into<String>) -> ImportError {
    ImportError::Bad { path: p.display().to_string(), reason: reason.into() }
}

fn read(p: &Path) -> Result<Vec<u8>, ImportError> {
    std::fs::read(p).map_err(|e| bad(p, e.to_string()))
}

/// Imports from `src` (a layout directory or either archive) as `name`.
pub fn import(src: &Path, name: &str, store: &Store) -> Result<ImageRecord, ImportError> {
    if src.is_dir() {
        return import_dir(src, name, store);
    }
    // Archives are unpacked to a scratch directory first (plain entries only).
    let scratch = store.scratch_dir("import")?;
    let result = (|| {
        let f = std::fs::File::open(src).map_err(|e| bad(src, e.to_string()))?;
        let mut ar = tar::Archive::new(f);
        for entry in ar.entries().map_err(|e| bad(src, e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(src, e.to_string()))?;
            if !entry.unpack_in(&scratch).map_err(|e| bad(src, e.to_string()))? {
                return Err(bad(src, "an entry escapes the archive"));
            }
        }
        import_dir(&scratch, name, store)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn import_dir(dir: &Path, name: &str, store: &Store) -> Result<ImageRecord, ImportError> {
    if dir.join("index.json").is_file() {
        import_oci_layout(dir, name, store)
    } else if dir.join("manifest.json").is_file() {
        import_docker_archive(dir, name, store)
    } else {
        Err(bad(dir, "neither an OCI image layout (index.json) nor a docker-archive (manifest.json)"))
    }
}

fn layout_blob(dir: &Path, digest: &str) -> Result<PathBuf, ImportError> {
    let hex = crate::store::digest_hex(digest)?;
    Ok(dir.join("blobs/sha256").join(hex))
}

fn import_oci_layout(dir: &Path, name: &str, store: &Store) -> Result<ImageRecord, ImportError> {
    let mut bytes = read(&dir.join("index.json"))?;
    let mut digest = sha256_of(&bytes);
    // index.json → (possibly a nested index →) a manifest.
    let manifest: ImageManifest = loop {
        match manifest::parse(&bytes)? {
            Fetched::Manifest(m) => break *m,
            Fetched::Index(idx) => {
                let d = if idx.manifests().len() == 1 { idx.manifests()[0].clone() } else { manifest::select(&idx)? };
                digest = d.digest().to_string();
                bytes = read(&layout_blob(dir, &digest)?)?;
            }
        }
    };
    store.put_blob(&digest, bytes.as_slice())?;
    for d in std::iter::once(manifest.config()).chain(manifest.layers().iter()) {
        let d = d.digest().to_string();
        let p = layout_blob(dir, &d)?;
        let f = std::fs::File::open(&p).map_err(|e| bad(&p, e.to_string()))?;
        store.put_blob(&d, f)?;
    }
    Ok(store.commit(name, &digest, &manifest)?)
}

/// `docker save`: manifest.json names the config and layer tars by path; the layers
/// are stored as they are and a manifest is synthesized for them.
fn import_docker_archive(dir: &Path, name: &str, store: &Store) -> Result<ImageRecord, ImportError> {
    let m: serde_json::Value =
        serde_json::from_slice(&read(&dir.join("manifest.json"))?).map_err(|e| bad(dir, e.to_string()))?;
    let first = m.get(0).ok_or_else(|| bad(dir, "manifest.json lists no image"))?;
    let inside = |rel: &str| -> Result<PathBuf, ImportError> {
        if rel.split('/').any(|c| c == "..") || rel.starts_with('/') {
            return Err(bad(dir, format!("path {rel:?} escapes the archive")));
        }
        Ok(dir.join(rel))
    };
    let config_path = inside(first["Config"].as_str().ok_or_else(|| bad(dir, "no Config"))?)?;
    let config = read(&config_path)?;
    let config_digest = sha256_of(&config);
    store.put_blob(&config_digest, config.as_slice())?;
    let mut layers = Vec::new();
    for l in first["Layers"].as_array().ok_or_else(|| bad(dir, "no Layers"))? {
        let p = inside(l.as_str().ok_or_else(|| bad(dir, "a layer path is not a string"))?)?;
        let data = read(&p)?;
        let d = sha256_of(&data);
        store.put_blob(&d, data.as_slice())?;
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": data.len()
        }));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| bad(dir, e.to_string()))?;
    let digest = sha256_of(&bytes);
    store.put_blob(&digest, bytes.as_slice())?;
    let parsed: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| bad(dir, e.to_string()))?;
    Ok(store.commit(name, &digest, &parsed)?)
}
