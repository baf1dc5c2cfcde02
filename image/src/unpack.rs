//! Applying image layers to a root directory: tar (plain, gzip or zstd) with OCI
//! whiteouts (`.wh.<name>` deletes, `.wh..wh..opq` empties a directory), ownership,
//! modes and xattrs kept, and nothing written outside the root (no `..`, no
//! escapes through symlinks).

use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {0:?} would land outside the rootfs")]
    Escape(String),
    #[error("the image unpacks to more than the {0} bytes allowed (ISOLA_MAX_UNPACKED_BYTES)")]
    TooLarge(u64),
    #[error("entry {0:?} is a {1}: only files, directories and symlinks are copied")]
    Kind(String, &'static str),
    #[error("layer: {0}")]
    Io(#[from] std::io::Error),
}

/// Counts what is read through it against a budget shared by an image's layers.
pub(crate) struct Budget<'a, R> {
    pub(crate) inner: R,
    pub(crate) left: &'a mut u64,
    pub(crate) limit: u64,
}

impl<R: Read> Read for Budget<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > *self.left {
            return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, TooLargeMarker(self.limit)));
        }
        *self.left -= n as u64;
        Ok(n)
    }
}

#[derive(Debug)]
struct TooLargeMarker(u64);

impl std::fmt::Display for TooLargeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "over the unpack limit of {} bytes", self.0)
    }
}

impl std::error::Error for TooLargeMarker {}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// The entry's path relative to the root, refusing `..` and absolute escapes.
pub(crate) fn clean(p: &Path) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            _ => return Err(UnpackError::Escape(p.display().to_string())),
        }
    }
    Ok(out)
}

/// `root/rel`'s parent resolved, checked to still be inside `root` (symlinks included).
pub(crate) fn inside(root: &Path, rel: &Path) -> Result<PathBuf, UnpackError> {
    let root_c = root.canonicalize()?;
    let target = root.join(rel);
    let parent = target.parent().unwrap_or(root);
    let parent_c = match parent.canonicalize() {
        Ok(p) => p,
        // A parent that does not exist yet cannot hold anything to delete.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(target),
        Err(e) => return Err(e.into()),
    };
    if !parent_c.starts_with(&root_c) {
        return Err(UnpackError::Escape(rel.display().to_string()));
    }
    Ok(parent_c.join(target.file_name().unwrap_or_default()))
}

pub(crate) fn remove_any(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Applies one layer (plain, gzip or zstd tar, detected by its magic) on top of `root`,
/// reading at most `budget` uncompressed bytes (what is read is taken off it).
pub fn apply_layer(reader: impl Read, root: &Path, budget: &mut u64) -> Result<(), UnpackError> {
    let limit = *budget;
    match apply(reader, root, budget) {
        Err(UnpackError::Io(e)) if is_over_budget(&e) => Err(UnpackError::TooLarge(limit)),
        r => r,
    }
}

/// Whether `e` is (or wraps, as the tar reader does) the budget running out.
pub(crate) fn is_over_budget(e: &std::io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    while let Some(err) = cur {
        if err.is::<TooLargeMarker>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            cur = io.get_ref().map(|r| r as _);
            continue;
        }
        cur = err.source();
    }
    e.kind() == std::io::ErrorKind::FileTooLarge
}

fn apply(reader: impl Read, root: &Path, budget: &mut u64) -> Result<(), UnpackError> {
    let limit = *budget;
    let mut buf = BufReader::new(reader);
    let head = buf.fill_buf()?;
    let inner: Box<dyn Read> = if head.starts_with(&GZIP_MAGIC) {
        Box::new(flate2::read::GzDecoder::new(buf))
    } else if head.starts_with(&ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buf)?)
    } else {
        Box::new(buf)
    };
    let inner = Budget { inner, left: budget, limit };
    let mut ar = tar::Archive::new(inner);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let rel = clean(&entry.path()?)?;
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        if name == OPAQUE {
            // Everything the lower layers put in this directory goes.
            let dir = inside(root, &rel)?.parent().map(Path::to_path_buf).unwrap_or_else(|| root.into());
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    remove_any(&e.path())?;
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            let victim = inside(root, &rel.with_file_name(hidden))?;
            remove_any(&victim)?;
            continue;
        }
        place(&mut entry, root, &rel)?;
    }
    Ok(())
}

/// Unpacks one entry at `rel` (already cleaned) under `root`: a different kind of file
/// replaces what was there (a lower layer's, or an earlier copy's), a directory stays,
/// and nothing lands outside `root` or through a symlink (`unpack_in`). The one rule of
/// both the layer unpacker and [`crate::extract`].
pub(crate) fn place<R: Read>(entry: &mut tar::Entry<'_, R>, root: &Path, rel: &Path) -> Result<(), UnpackError> {
    let target = inside(root, rel)?;
    if let Ok(m) = std::fs::symlink_metadata(&target) {
        if !(m.is_dir() && entry.header().entry_type().is_dir()) {
            remove_any(&target)?;
        }
    }
    if !entry.unpack_in(root)? {
        return Err(UnpackError::Escape(rel.display().to_string()));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn unlimited() -> u64 {
        u64::MAX
    }

    fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match content {
                Some(c) => {
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    h.set_entry_type(tar::EntryType::Regular);
                    b.append_data(&mut h, path, c.as_bytes()).expect("file");
                }
                None => {
                    h.set_size(0);
                    h.set_mode(0o755);
                    h.set_entry_type(tar::EntryType::Directory);
                    b.append_data(&mut h, path, std::io::empty()).expect("dir");
                }
            }
        }
        b.into_inner().expect("tar")
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("gz");
        e.finish().expect("gz")
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_layers() {
        let root = tempfile::tempdir().expect("root");
        let l1 =
            layer(&[("etc", None), ("etc/a", Some("1")), ("etc/b", Some("2")), ("var", None), ("var/x", Some("x"))]);
        apply_layer(l1.as_slice(), root.path(), &mut unlimited()).expect("layer 1");
        let l2 = gzip(&layer(&[("etc/.wh.a", Some("")), ("var/.wh..wh..opq", Some("")), ("var/y", Some("y"))]));
        apply_layer(l2.as_slice(), root.path(), &mut unlimited()).expect("layer 2 (gzip)");
        assert!(!root.path().join("etc/a").exists());
        assert_eq!(std::fs::read_to_string(root.path().join("etc/b")).expect("b"), "2");
        assert!(!root.path().join("var/x").exists(), "opaque dir hides the lower contents");
        assert_eq!(std::fs::read_to_string(root.path().join("var/y")).expect("y"), "y");
        assert!(!root.path().join("etc/.wh.a").exists(), "whiteout markers are not files");
    }

    /// One tar entry with its name and link as given (old-style header, no checks).
    pub(crate) fn raw_entry(
        b: &mut tar::Builder<Vec<u8>>,
        name: &[u8],
        kind: tar::EntryType,
        link: Option<&[u8]>,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, data).expect("append");
    }

    #[test]
    fn malicious_layers_cannot_write_outside_the_root() {
        let outside = tempfile::tempdir().expect("outside");
        let root = tempfile::tempdir().expect("root");
        // `..` in a path.
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, b"../escaped", tar::EntryType::Regular, None, b"x");
        let e =
            apply_layer(b.into_inner().expect("tar").as_slice(), root.path(), &mut unlimited()).expect_err("dotdot");
        assert!(matches!(e, UnpackError::Escape(_)), "{e}");
        // A symlink to outside, then a file through it.
        let target = outside.path().to_str().expect("p").as_bytes().to_vec();
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, b"link", tar::EntryType::Symlink, Some(&target), b"");
        raw_entry(&mut b, b"link/pwned", tar::EntryType::Regular, None, b"x");
        let e = apply_layer(b.into_inner().expect("tar").as_slice(), root.path(), &mut unlimited())
            .expect_err("symlink escape");
        assert!(matches!(e, UnpackError::Escape(_)), "{e}");
        // A whiteout through the symlink must not delete outside either.
        std::fs::write(outside.path().join("victim"), "keep").expect("victim");
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, b"link/.wh.victim", tar::EntryType::Regular, None, b"");
        let e = apply_layer(b.into_inner().expect("tar").as_slice(), root.path(), &mut unlimited())
            .expect_err("whiteout escape");
        assert!(matches!(e, UnpackError::Escape(_)), "{e}");
        assert!(outside.path().join("victim").exists());
        assert!(!outside.path().join("pwned").exists());
        assert!(!root.path().parent().expect("parent").join("escaped").exists());
    }

    #[test]
    fn a_layer_that_unpacks_past_the_budget_is_refused() {
        let root = tempfile::tempdir().expect("root");
        // 4 MiB of zeros compress to a few KiB: the bomb shape.
        let big = vec![0u8; 4 << 20];
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, b"zeros", tar::EntryType::Regular, None, &big);
        let b = b.into_inner().expect("tar");
        let layer = gzip(&b);
        assert!(layer.len() < 64 << 10, "{} bytes compressed", layer.len());
        let mut budget = 1 << 20;
        let e = apply_layer(layer.as_slice(), root.path(), &mut budget).expect_err("over budget");
        assert!(matches!(e, UnpackError::TooLarge(1048576)), "{e}");
        let mut budget = 8 << 20;
        apply_layer(layer.as_slice(), root.path(), &mut budget).expect("within budget");
        assert!(budget < (4 << 20), "what was read is taken off the budget: {budget}");
        // The same bomb as zstd is held to the same budget.
        let zst = zstd::encode_all(b.as_slice(), 3).expect("zstd");
        let mut budget = 1 << 20;
        let e = apply_layer(zst.as_slice(), root.path(), &mut budget).expect_err("zstd over budget");
        assert!(matches!(e, UnpackError::TooLarge(1048576)), "{e}");
    }

    #[test]
    fn zstd_layers_apply_like_gzip_ones() {
        let root = tempfile::tempdir().expect("root");
        let l = layer(&[("etc", None), ("etc/z", Some("from zstd"))]);
        let zst = zstd::encode_all(l.as_slice(), 3).expect("zstd");
        apply_layer(zst.as_slice(), root.path(), &mut unlimited()).expect("zstd layer");
        assert_eq!(std::fs::read_to_string(root.path().join("etc/z")).expect("z"), "from zstd");
        let mut bad = zst.clone();
        bad.truncate(zst.len() / 2);
        let e = apply_layer(bad.as_slice(), tempfile::tempdir().expect("r").path(), &mut unlimited());
        assert!(e.is_err(), "a truncated zstd layer is an error");
    }
}
