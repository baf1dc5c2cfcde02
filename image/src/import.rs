//! Importing images without a registry: an OCI image layout directory, an oci-archive
//! (a tar of one), or a docker-archive (`docker save`).

use std::path::Path;

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

/// Opens `rel` inside `root` as if `root` were `/`: symlinks an archive planted are
/// followed only within it (`openat2` `RESOLVE_IN_ROOT`), never to a host file.
fn open_in(root: &Path, rel: &str) -> Result<std::fs::File, ImportError> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let shown = root.join(rel);
    let root_c = std::ffi::CString::new(root.as_os_str().as_bytes()).map_err(|_| bad(root, "path has a NUL"))?;
    let rel_c = std::ffi::CString::new(rel).map_err(|_| bad(&shown, "path has a NUL"))?;
    // SAFETY: open(2) with a NUL-terminated path; a new descriptor or -1.
    let dir = unsafe { libc::open(root_c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if dir < 0 {
        return Err(bad(root, std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: a new descriptor that nothing else owns (closed when it drops).
    let dir = unsafe { std::os::fd::OwnedFd::from_raw_fd(dir) };
    // SAFETY: open_how is plain data; zeroed then filled.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 with our directory, a NUL-terminated path and an open_how of the
    // size passed; it writes nothing back.
    let fd = unsafe {
        use std::os::fd::AsRawFd;
        libc::syscall(libc::SYS_openat2, dir.as_raw_fd(), rel_c.as_ptr(), &how, std::mem::size_of::<libc::open_how>())
    };
    if fd < 0 {
        return Err(bad(&shown, std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let f = unsafe { std::fs::File::from_raw_fd(fd as libc::c_int) };
    if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err(bad(&shown, "not a regular file"));
    }
    Ok(f)
}

fn read_in(root: &Path, rel: &str) -> Result<Vec<u8>, ImportError> {
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut open_in(root, rel)?, &mut v).map_err(|e| bad(&root.join(rel), e.to_string()))?;
    Ok(v)
}

/// The blobs one import added, removed again unless the import succeeds.
struct Added<'a> {
    store: &'a Store,
    digests: Vec<String>,
    done: bool,
}

impl Added<'_> {
    fn put(&mut self, digest: &str, r: impl std::io::Read) -> Result<(), ImportError> {
        let fresh = !self.store.has_blob(digest);
        self.store.put_blob(digest, r)?;
        if fresh {
            self.digests.push(digest.into());
        }
        Ok(())
    }
}

impl Drop for Added<'_> {
    fn drop(&mut self) {
        if !self.done {
            for d in &self.digests {
                self.store.remove_blob(d);
            }
        }
    }
}

/// Imports from `src` (a layout directory or either archive) as `name`.
pub fn import(src: &Path, name: &str, store: &Store) -> Result<ImageRecord, ImportError> {
    if src.is_dir() {
        return import_dir(src, name, store);
    }
    // Archives are unpacked to a scratch directory first.
    let scratch = store.scratch_dir("import")?;
    let result = (|| {
        let f = std::fs::File::open(src).map_err(|e| bad(src, e.to_string()))?;
        let mut ar = tar::Archive::new(f);
        for entry in ar.entries().map_err(|e| bad(src, e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(src, e.to_string()))?;
            // Files, directories and symlinks (docker save links duplicate layers; they
            // are only ever followed inside the scratch directory). A hard link could
            // name a host file on the same filesystem, a device node a host device.
            let kind = entry.header().entry_type();
            if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
                continue;
            }
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
    let mut added = Added { store, digests: vec![], done: false };
    let r = if open_in(dir, "index.json").is_ok() {
        import_oci_layout(dir, name, &mut added)
    } else if open_in(dir, "manifest.json").is_ok() {
        import_docker_archive(dir, name, &mut added)
    } else {
        Err(bad(dir, "neither an OCI image layout (index.json) nor a docker-archive (manifest.json)"))
    };
    added.done = r.is_ok();
    r
}

fn layout_blob(digest: &str) -> Result<String, ImportError> {
    Ok(format!("blobs/sha256/{}", crate::store::digest_hex(digest)?))
}

fn import_oci_layout(dir: &Path, name: &str, added: &mut Added<'_>) -> Result<ImageRecord, ImportError> {
    let store = added.store;
    let mut bytes = read_in(dir, "index.json")?;
    let mut digest = sha256_of(&bytes);
    // index.json → (possibly a nested index →) a manifest.
    let manifest: ImageManifest = loop {
        match manifest::parse(&bytes)? {
            Fetched::Manifest(m) => break *m,
            Fetched::Index(idx) => {
                let d = if idx.manifests().len() == 1 { idx.manifests()[0].clone() } else { manifest::select(&idx)? };
                digest = d.digest().to_string();
                bytes = read_in(dir, &layout_blob(&digest)?)?;
            }
        }
    };
    added.put(&digest, bytes.as_slice())?;
    for d in std::iter::once(manifest.config()).chain(manifest.layers().iter()) {
        let d = d.digest().to_string();
        added.put(&d, open_in(dir, &layout_blob(&d)?)?)?;
    }
    Ok(store.commit(name, &digest, &manifest)?)
}

/// `docker save`: manifest.json names the config and layer tars by path; the layers
/// are stored as they are and a manifest is synthesized for them.
fn import_docker_archive(dir: &Path, name: &str, added: &mut Added<'_>) -> Result<ImageRecord, ImportError> {
    let store = added.store;
    let m: serde_json::Value =
        serde_json::from_slice(&read_in(dir, "manifest.json")?).map_err(|e| bad(dir, e.to_string()))?;
    let first = m.get(0).ok_or_else(|| bad(dir, "manifest.json lists no image"))?;
    // Paths are resolved inside the archive whatever they say (`..`, absolute, links).
    let config = read_in(dir, first["Config"].as_str().ok_or_else(|| bad(dir, "no Config"))?)?;
    let config_digest = sha256_of(&config);
    added.put(&config_digest, config.as_slice())?;
    let mut layers = Vec::new();
    for l in first["Layers"].as_array().ok_or_else(|| bad(dir, "no Layers"))? {
        let data = read_in(dir, l.as_str().ok_or_else(|| bad(dir, "a layer path is not a string"))?)?;
        let d = sha256_of(&data);
        added.put(&d, data.as_slice())?;
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
    added.put(&digest, bytes.as_slice())?;
    let parsed: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| bad(dir, e.to_string()))?;
    Ok(store.commit(name, &digest, &parsed)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
        crate::unpack::tests::raw_entry(b, name.as_bytes(), kind, link.map(str::as_bytes), data);
    }

    fn layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, "hello", tar::EntryType::Regular, None, b"hi");
        b.into_inner().expect("tar")
    }

    fn blobs(store_dir: &Path) -> usize {
        std::fs::read_dir(store_dir.join("blobs/sha256")).map(|d| d.count()).unwrap_or(0)
    }

    /// A docker-archive whose members are links to host files (absolute, `..`, hard)
    /// imports nothing of the host's and leaves no blob; links inside the archive (as
    /// `docker save` makes for duplicate layers) still work.
    #[test]
    fn archive_links_never_reach_host_files_and_a_failed_import_leaves_no_blob() {
        let host = tempfile::tempdir().expect("host");
        let secret = host.path().join("secret");
        std::fs::write(&secret, "host secret").expect("secret");
        let store_dir = tempfile::tempdir().expect("store");
        let store = Store::open(store_dir.path()).expect("store");
        let work = tempfile::tempdir().expect("work");
        let secret_s = secret.display().to_string();
        let up = format!("../../../../../../..{secret_s}");
        for (how, link) in [("absolute", secret_s.as_str()), ("dotdot", up.as_str())] {
            for kind in [tar::EntryType::Symlink, tar::EntryType::Link] {
                let mut b = tar::Builder::new(Vec::new());
                let manifest = br#"[{"Config":"config.json","Layers":["l/layer.tar"]}]"#;
                entry(&mut b, "manifest.json", tar::EntryType::Regular, None, manifest);
                entry(&mut b, "config.json", tar::EntryType::Regular, None, b"{}");
                entry(&mut b, "l/layer.tar", kind, Some(link), b"");
                let archive = work.path().join(format!("{how}-{kind:?}.tar"));
                std::fs::write(&archive, b.into_inner().expect("tar")).expect("archive");
                let e = import(&archive, "evil:latest", &store).expect_err("a link to a host file");
                assert!(!e.to_string().contains("host secret"), "{e}");
                assert_eq!(blobs(store_dir.path()), 0, "{how} {kind:?}: a failed import leaves no blob");
            }
        }
        // Duplicate layers linked inside the archive import fine.
        let mut b = tar::Builder::new(Vec::new());
        let manifest = br#"[{"Config":"config.json","Layers":["a/layer.tar","b/layer.tar"]}]"#;
        entry(&mut b, "manifest.json", tar::EntryType::Regular, None, manifest);
        entry(&mut b, "config.json", tar::EntryType::Regular, None, b"{}");
        entry(&mut b, "a/layer.tar", tar::EntryType::Regular, None, &layer());
        entry(&mut b, "b/layer.tar", tar::EntryType::Symlink, Some("../a/layer.tar"), b"");
        let archive = work.path().join("dedup.tar");
        std::fs::write(&archive, b.into_inner().expect("tar")).expect("archive");
        let r = import(&archive, "dedup:latest", &store).expect("links inside the archive");
        assert_eq!(r.layers.len(), 2);
        assert_eq!(std::fs::read_to_string(store.rootfs(&r).join("hello")).expect("unpacked"), "hi");
    }
}
