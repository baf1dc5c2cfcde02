//! The content-addressed image store (`/var/lib/isola/images`): verified blobs by
//! digest, one unpacked rootfs per image manifest, and the name → image records.
//! Everything is written to a temporary name first, so a failed pull or import leaves
//! no partial image.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("digest mismatch for {expected}: the content hashes to {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("unsupported or malformed digest {0:?} (only sha256)")]
    BadDigest(String),
    #[error("no image {0} (see `isola images`)")]
    NotFound(String),
    #[error("image metadata: {0}")]
    Json(String),
    /// The opener of a resumable download failed (its own error is kept by the caller).
    #[error("download source: {0}")]
    Source(String),
    #[error("layer {digest}: {source}")]
    Layer { digest: String, source: crate::unpack::UnpackError },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}

/// Most files, directories and links one image's disk may hold by default.
pub const DEFAULT_MAX_INODES: u64 = 1_000_000;

/// A built disk: its file and the serial the guest finds it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDisk {
    pub path: PathBuf,
    pub serial: String,
}

/// The key of an image's disk: its layers, in order (two tags, or two configs, of the
/// same layers share one disk).
pub fn disk_key(layers: &[String]) -> String {
    let mut h = Sha256::new();
    for l in layers {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The virtio-blk serial (at most 20 bytes) of the disk with `key`.
pub fn disk_serial(key: &str) -> String {
    format!("isola-{}", &key[..14.min(key.len())])
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized reference, e.g. `127.0.0.1:5000/test/busybox:v1`.
    pub name: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layers: Vec<String>,
    /// Compressed size of the layers, bytes.
    pub size: u64,
    pub created_unix: u64,
}

pub struct Store {
    root: PathBuf,
    max_unpacked: u64,
    max_inodes: u64,
}

/// The most one image may unpack to, by default (its layers' uncompressed tar bytes):
/// a small gzip layer can expand a thousandfold.
pub const DEFAULT_MAX_UNPACKED: u64 = 16 << 30;

/// A new file only its owner may read, at `path`: whatever was there (a stale
/// temporary, a planted symlink) is unlinked first and the file made with O_EXCL and
/// O_NOFOLLOW, so what is written (a blob, the registry credentials) lands in it alone.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Replaces `path` with `bytes`, private to its owner, through `tmp` (on the same
/// filesystem), synced and renamed: a reader or a crash never sees half of it.
pub(crate) fn write_atomic(path: &Path, tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = create_private(tmp)?;
    std::io::Write::write_all(&mut f, bytes)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

/// `sha256:<64 lowercase hex>` → the hex part.
pub fn digest_hex(d: &str) -> Result<&str, StoreError> {
    let hex = d.strip_prefix("sha256:").ok_or_else(|| StoreError::BadDigest(d.into()))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(StoreError::BadDigest(d.into()));
    }
    Ok(hex)
}

/// Reads `r` to its end, hashing it and copying it to `to` when given; `have` counts
/// the bytes and `progress` hears the count after each chunk. Errors say which side failed.
fn stream(
    r: &mut dyn Read,
    mut to: Option<&mut std::fs::File>,
    h: &mut Sha256,
    have: &mut u64,
    limit: Option<u64>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), (&'static str, std::io::Error)> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(("downloading into", e)),
        };
        if limit.is_some_and(|l| *have + n as u64 > l) {
            let msg = format!("more than the {} bytes its descriptor declares", limit.unwrap_or(0));
            return Err(("receiving", std::io::Error::new(std::io::ErrorKind::FileTooLarge, msg)));
        }
        h.update(&buf[..n]);
        if let Some(f) = to.as_mut() {
            f.write_all(&buf[..n]).map_err(|e| ("writing", e))?;
        }
        *have += n as u64;
        progress(*have);
    }
}

pub fn sha256_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Store {
    pub fn default_root() -> PathBuf {
        std::env::var_os("ISOLA_IMAGE_DIR").map(PathBuf::from).unwrap_or_else(|| "/var/lib/isola/images".into())
    }

    /// Opens (creating) the store at `root`, closed to everyone but its owner: image
    /// files keep their setuid bits and file capabilities for the guest, and nobody on
    /// the host can reach them to run them. Unpacking an image is capped at
    /// `$ISOLA_MAX_UNPACKED_BYTES` (default [`DEFAULT_MAX_UNPACKED`]).
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for d in ["blobs/sha256", "rootfs", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io("creating", &p))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(io("closing", root))?;
        let max_unpacked =
            std::env::var("ISOLA_MAX_UNPACKED_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MAX_UNPACKED);
        let max_inodes =
            std::env::var("ISOLA_MAX_IMAGE_INODES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MAX_INODES);
        Ok(Self { root: root.into(), max_unpacked, max_inodes })
    }

    /// What unpacking one image may write (its layers' uncompressed tar streams).
    pub fn max_unpacked(&self) -> u64 {
        self.max_unpacked
    }

    /// Caps what unpacking one image may write (its layers' uncompressed tar streams).
    pub fn set_max_unpacked(&mut self, bytes: u64) {
        self.max_unpacked = bytes;
    }

    /// Most files one image's disk may hold (`$ISOLA_MAX_IMAGE_INODES`, default
    /// [`DEFAULT_MAX_INODES`]).
    pub fn max_inodes(&self) -> u64 {
        self.max_inodes
    }

    pub fn set_max_inodes(&mut self, n: u64) {
        self.max_inodes = n;
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// A temporary file name under the store, this process's own.
    pub(crate) fn tmp_file(&self, tag: &str) -> PathBuf {
        self.tmp_path(tag)
    }

    fn tmp_path(&self, tag: &str) -> PathBuf {
        self.root.join("tmp").join(format!("{tag}.{}", std::process::id()))
    }

    /// An empty private working directory under the store (same filesystem, so
    /// results can be renamed into place).
    pub fn scratch_dir(&self, tag: &str) -> Result<PathBuf, StoreError> {
        let p = self.tmp_path(tag);
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(io("creating", &p))?;
        Ok(p)
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Streams `r` into the store, keeping it only if it hashes to `digest`.
    pub fn put_blob(&self, digest: &str, mut r: impl Read) -> Result<u64, StoreError> {
        let tmp = self.tmp_path(digest_hex(digest)?);
        let mut f = create_private(&tmp).map_err(io("creating", &tmp))?;
        let (mut h, mut total) = (Sha256::new(), 0u64);
        if let Err((op, e)) = stream(&mut r, Some(&mut f), &mut h, &mut total, None, &mut |_| {}) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(op, &tmp)(e));
        }
        self.keep_if_matches(&tmp, digest, h)?;
        Ok(total)
    }

    /// Downloads `digest` resumably: a `.partial` file left by an interrupted pull is
    /// re-hashed and `open(offset)` asked to continue from its end (it answers with a
    /// reader and whether it honoured the offset; if not, we start over). Verified
    /// before it is kept, like [`Store::put_blob`].
    /// More bytes than `declared` (the descriptor's size) fail the download at once and
    /// discard what was received.
    pub fn put_blob_resumable(
        &self,
        digest: &str,
        declared: Option<u64>,
        open: &mut dyn FnMut(u64) -> Result<(Box<dyn Read>, bool), StoreError>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, StoreError> {
        let part = self.root.join("tmp").join(format!("{}.partial", digest_hex(digest)?));
        let (mut h, mut have) = (Sha256::new(), 0u64);
        if let Ok(mut f) = std::fs::File::open(&part) {
            stream(&mut f, None, &mut h, &mut have, None, &mut |_| {}).map_err(|(_, e)| io("reading", &part)(e))?;
        }
        let (mut r, honoured) = open(have)?;
        let mut f = if honoured && have > 0 {
            {
                use std::os::unix::fs::OpenOptionsExt;
                let mut o = std::fs::OpenOptions::new();
                o.append(true).custom_flags(libc::O_NOFOLLOW);
                o.open(&part).map_err(io("appending", &part))?
            }
        } else {
            (h, have) = (Sha256::new(), 0);
            create_private(&part).map_err(io("creating", &part))?
        };
        // On an error the partial file stays for the next attempt, unless it is already
        // too big: that one is garbage.
        if let Err((op, e)) = stream(&mut r, Some(&mut f), &mut h, &mut have, declared, progress) {
            if e.kind() == std::io::ErrorKind::FileTooLarge {
                let _ = std::fs::remove_file(&part);
            }
            return Err(io(op, &part)(e));
        }
        self.keep_if_matches(&part, digest, h)?;
        Ok(have)
    }

    /// Renames `tmp` into place as blob `digest` if `h` says it is; deletes it if not.
    fn keep_if_matches(&self, tmp: &Path, digest: &str, h: Sha256) -> Result<(), StoreError> {
        let actual = format!("sha256:{}", hex(&h.finalize()));
        if actual != digest {
            let _ = std::fs::remove_file(tmp);
            return Err(StoreError::DigestMismatch { expected: digest.into(), actual });
        }
        let dst = self.blob_path(digest)?;
        std::fs::rename(tmp, &dst).map_err(io("storing", &dst))
    }

    /// Deletes blob `digest` (undoing a failed import's additions).
    pub fn remove_blob(&self, digest: &str) {
        if let Ok(p) = self.blob_path(digest) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Deletes those of `digests` that no recorded image uses (undoing what a failed
    /// pull added, without touching what a concurrent pull has committed since).
    pub fn remove_unreferenced(&self, digests: &[String]) {
        let records = self.list();
        let used = |d: &String| {
            records.iter().any(|r| &r.config_digest == d || &r.manifest_digest == d || r.layers.contains(d))
        };
        for d in digests.iter().filter(|d| !used(d)) {
            self.remove_blob(d);
        }
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(digest)?;
        std::fs::read(&p).map_err(io("reading", &p))
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        std::fs::read(self.index_path()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    fn save(&self, records: &[ImageRecord]) -> Result<(), StoreError> {
        let tmp = self.tmp_path("images.json");
        let json = serde_json::to_vec_pretty(records).map_err(|e| StoreError::Json(e.to_string()))?;
        write_atomic(&self.index_path(), &tmp, &json).map_err(io("writing", &self.index_path()))
    }

    /// By full name, by the name as a user would type it (`busybox`), or by digest.
    pub fn find(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let normalized = name.parse::<crate::Reference>().map(|r| r.to_string()).unwrap_or_else(|_| name.into());
        self.list()
            .into_iter()
            .find(|r| r.name == normalized || r.name == name || r.manifest_digest == name)
            .ok_or_else(|| StoreError::NotFound(name.into()))
    }

    pub(crate) fn disk_path(&self, key: &str) -> PathBuf {
        self.root().join("disks").join(format!("{key}.erofs"))
    }

    /// `r`'s disk if it was built.
    pub fn disk(&self, r: &ImageRecord) -> Option<ImageDisk> {
        let k = disk_key(&r.layers);
        let path = self.disk_path(&k);
        path.is_file().then(|| ImageDisk { path, serial: disk_serial(&k) })
    }

    /// Removes the disk of `layers` (when no image uses them any more).
    pub(crate) fn remove_disk(&self, layers: &[String]) {
        let _ = std::fs::remove_file(self.disk_path(&disk_key(layers)));
    }

    pub fn rootfs(&self, r: &ImageRecord) -> PathBuf {
        self.root.join("rootfs").join(r.manifest_digest.trim_start_matches("sha256:"))
    }

    pub fn config(&self, r: &ImageRecord) -> Result<ImageConfiguration, StoreError> {
        let b = self.read_blob(&r.config_digest)?;
        serde_json::from_slice(&b).map_err(|e| StoreError::Json(format!("image config: {e}")))
    }

    /// Unpacks the manifest's layers (already in the store) and records `name`.
    pub fn commit(
        &self,
        name: &str,
        manifest_digest: &str,
        manifest: &ImageManifest,
    ) -> Result<ImageRecord, StoreError> {
        let layers: Vec<String> = manifest.layers().iter().map(|l| l.digest().to_string()).collect();
        let record = ImageRecord {
            name: name.into(),
            manifest_digest: manifest_digest.into(),
            config_digest: manifest.config().digest().to_string(),
            size: manifest.layers().iter().fold(0u64, |t, l| t.saturating_add(l.size())),
            layers: layers.clone(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let dst = self.rootfs(&record);
        if !dst.is_dir() {
            let tmp = self.tmp_path(&format!("rootfs-{}", digest_hex(manifest_digest)?));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).map_err(io("creating", &tmp))?;
            let mut budget = self.max_unpacked;
            for d in &layers {
                let p = self.blob_path(d)?;
                let f = std::fs::File::open(&p).map_err(io("opening", &p))?;
                if let Err(source) = crate::unpack::apply_layer(f, &tmp, &mut budget) {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(StoreError::Layer { digest: d.clone(), source });
                }
            }
            std::fs::rename(&tmp, &dst).map_err(io("storing", &dst))?;
        }
        let mut all: Vec<ImageRecord> = self.list().into_iter().filter(|r| r.name != name).collect();
        all.push(record.clone());
        self.save(&all)?;
        Ok(record)
    }

    /// Forgets `name`; its rootfs and blobs go when no other image uses them.
    pub fn remove(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let gone = self.find(name)?;
        let rest: Vec<ImageRecord> = self.list().into_iter().filter(|r| r.name != gone.name).collect();
        self.save(&rest)?;
        if !rest.iter().any(|r| r.manifest_digest == gone.manifest_digest) {
            let _ = std::fs::remove_dir_all(self.rootfs(&gone));
        }
        if !rest.iter().any(|r| r.layers == gone.layers) {
            self.remove_disk(&gone.layers);
        }
        let used =
            |d: &String| rest.iter().any(|r| &r.config_digest == d || r.manifest_digest == *d || r.layers.contains(d));
        for d in gone.layers.iter().chain([&gone.config_digest, &gone.manifest_digest]) {
            if !used(d) {
                if let Ok(p) = self.blob_path(d) {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symlink planted at the temporary's name (the credentials', a blob's) is not
    /// followed: its target stays as it was.
    #[test]
    fn a_planted_symlink_at_a_temporary_is_not_followed() {
        let d = tempfile::tempdir().expect("tmp");
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").expect("victim");
        let tmp = d.path().join("auth.json.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).expect("plant");
        write_atomic(&d.path().join("auth.json"), &tmp, b"{}").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious");
        assert_eq!(std::fs::read_to_string(d.path().join("auth.json")).expect("written"), "{}");
    }

    #[test]
    fn interrupted_downloads_resume_from_the_partial_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("store");
        let content = b"0123456789abcdefghij".repeat(1000);
        let d = sha256_of(&content);
        // First attempt: the connection dies after 5000 bytes.
        struct Dies<'a>(&'a [u8]);
        impl Read for Dies<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::ErrorKind::ConnectionReset.into());
                }
                let n = b.len().min(self.0.len());
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let first = content[..5000].to_vec();
        let e = s
            .put_blob_resumable(
                &d,
                None,
                &mut |_| Ok((Box::new(Dies(Box::leak(first.clone().into_boxed_slice()))), true)),
                &mut |_| {},
            )
            .expect_err("interrupted");
        assert!(e.to_string().contains("downloading"), "{e}");
        // Second attempt is asked for the rest only.
        let mut asked = None;
        let rest = content[5000..].to_vec();
        let n = s
            .put_blob_resumable(
                &d,
                Some(content.len() as u64),
                &mut |off| {
                    asked = Some(off);
                    Ok((Box::new(std::io::Cursor::new(rest.clone())), true))
                },
                &mut |_| {},
            )
            .expect("resumed");
        assert_eq!((asked, n), (Some(5000), content.len() as u64));
        assert_eq!(s.read_blob(&d).expect("stored"), content);
        // A server that ignores the range restarts the download cleanly.
        let d2 = sha256_of(b"whole");
        std::fs::write(dir.path().join("tmp").join(format!("{}.partial", digest_hex(&d2).expect("hex"))), b"wh")
            .expect("partial");
        s.put_blob_resumable(&d2, None, &mut |_| Ok((Box::new(&b"whole"[..]), false)), &mut |_| {}).expect("restart");
        assert_eq!(s.read_blob(&d2).expect("stored"), b"whole");
    }

    #[test]
    fn a_blob_larger_than_declared_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("store");
        let content = vec![7u8; 100_000];
        let d = sha256_of(&content);
        let e = s
            .put_blob_resumable(
                &d,
                Some(1000),
                &mut |_| Ok((Box::new(std::io::Cursor::new(content.clone())), true)),
                &mut |_| {},
            )
            .expect_err("over the declared size");
        assert!(e.to_string().contains("declares"), "{e}");
        assert!(!s.has_blob(&d));
        let tmp: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).expect("tmp").flatten().collect();
        assert!(tmp.is_empty(), "nothing left: {tmp:?}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path()).expect("root").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the store is closed to others");
    }

    #[test]
    fn blobs_are_kept_only_when_their_digest_matches() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("store");
        let good = sha256_of(b"hello");
        assert_eq!(s.put_blob(&good, &b"hello"[..]).expect("stored"), 5);
        assert!(s.has_blob(&good));
        let wrong = sha256_of(b"something else");
        let e = s.put_blob(&wrong, &b"hello"[..]).expect_err("mismatch");
        assert!(matches!(e, StoreError::DigestMismatch { .. }), "{e}");
        assert!(std::fs::read_dir(dir.path().join("tmp")).expect("tmp").next().is_none(), "no partial blob left");
        assert!(matches!(s.put_blob("md5:abc", &b""[..]), Err(StoreError::BadDigest(_))));
        assert!(matches!(s.blob_path("sha256:../../etc"), Err(StoreError::BadDigest(_))));
    }
}
