//! A tar a container made (`isola cp` out of a sandbox) unpacked into a host directory.
//! The container is hostile: only regular files, directories and symlinks are taken
//! (no devices, fifos or hard links), nothing lands outside the directory or through a
//! symlink, files belong to the caller and lose set-id and sticky bits, xattrs are
//! dropped, and at most `budget` bytes are read.

use std::io::Read;
use std::path::Path;

use tar::EntryType;

use crate::unpack::{clean, is_over_budget, place, Budget, UnpackError};

/// Unpacks `reader` (a plain tar) into `root`, an existing directory.
pub fn extract_untrusted(reader: impl Read, root: &Path, budget: u64) -> Result<(), UnpackError> {
    let mut left = budget;
    match extract(reader, root, &mut left, budget) {
        Err(UnpackError::Io(e)) if is_over_budget(&e) => Err(UnpackError::TooLarge(budget)),
        r => r,
    }
}

fn extract(reader: impl Read, root: &Path, left: &mut u64, limit: u64) -> Result<(), UnpackError> {
    let mut ar = tar::Archive::new(Budget { inner: reader, left, limit });
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(false);
    ar.set_unpack_xattrs(false);
    ar.set_mask(0o7000);
    ar.set_overwrite(true);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let rel = clean(&entry.path()?)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        let refused = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory | EntryType::Symlink => None,
            EntryType::Link => Some("hard link"),
            EntryType::Char | EntryType::Block => Some("device"),
            EntryType::Fifo => Some("fifo"),
            _ => Some("special entry"),
        };
        if let Some(what) = refused {
            return Err(UnpackError::Kind(rel.display().to_string(), what));
        }
        place(&mut entry, root, &rel)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().expect("tar")
    }

    fn header(kind: EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(4242);
        h.set_gid(4242);
        h
    }

    #[test]
    fn files_dirs_and_links_come_out_owned_by_the_caller_without_setid_bits() {
        let t = tar_of(|b| {
            b.append_data(&mut header(EntryType::Directory, 0o755, 0), "d", std::io::empty()).expect("dir");
            b.append_data(&mut header(EntryType::Regular, 0o4755, 2), "d/suid", &b"hi"[..]).expect("file");
            let mut l = header(EntryType::Symlink, 0o777, 0);
            l.set_link_name("/etc/passwd").expect("link");
            b.append_data(&mut l, "d/link", std::io::empty()).expect("link");
        });
        let root = tempfile::tempdir().expect("root");
        extract_untrusted(t.as_slice(), root.path(), 1 << 20).expect("extract");
        let f = root.path().join("d/suid");
        let m = std::fs::metadata(&f).expect("file");
        assert_eq!(m.permissions().mode() & 0o7777, 0o755, "set-uid bit dropped");
        let me = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(root.path()).expect("root"));
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&m), me, "owned by the caller");
        assert_eq!(std::fs::read_link(root.path().join("d/link")).expect("link").to_str(), Some("/etc/passwd"));
    }

    #[test]
    fn devices_hard_links_escapes_and_oversized_tars_are_refused_by_name() {
        let root = tempfile::tempdir().expect("root");
        for (kind, what) in [(EntryType::Char, "device"), (EntryType::Block, "device"), (EntryType::Fifo, "fifo")] {
            let t = tar_of(|b| b.append_data(&mut header(kind, 0o644, 0), "dev", std::io::empty()).expect("entry"));
            let e = extract_untrusted(t.as_slice(), root.path(), 1 << 20).expect_err(what);
            assert!(matches!(&e, UnpackError::Kind(p, w) if p == "dev" && *w == what), "{e}");
        }
        let t = tar_of(|b| {
            let mut h = header(EntryType::Link, 0o644, 0);
            h.set_link_name("/etc/shadow").expect("link");
            b.append_data(&mut h, "hard", std::io::empty()).expect("entry");
        });
        let e = extract_untrusted(t.as_slice(), root.path(), 1 << 20).expect_err("hard link");
        assert!(matches!(e, UnpackError::Kind(_, "hard link")), "{e}");
        // Through a symlink the tar itself planted: nothing lands outside.
        let outside = tempfile::tempdir().expect("outside");
        let t = tar_of(|b| {
            let mut l = header(EntryType::Symlink, 0o777, 0);
            l.set_link_name(outside.path()).expect("link");
            b.append_data(&mut l, "out", std::io::empty()).expect("link");
            b.append_data(&mut header(EntryType::Regular, 0o644, 1), "out/pwned", &b"x"[..]).expect("file");
        });
        let e = extract_untrusted(t.as_slice(), root.path(), 1 << 20).expect_err("escape");
        assert!(matches!(e, UnpackError::Escape(_)), "{e}");
        assert!(!outside.path().join("pwned").exists());
        let t = tar_of(|b| {
            b.append_data(&mut header(EntryType::Regular, 0o644, 4 << 20), "big", &vec![0u8; 4 << 20][..]).expect("big")
        });
        let e = extract_untrusted(t.as_slice(), root.path(), 1 << 20).expect_err("budget");
        assert!(matches!(e, UnpackError::TooLarge(1048576)), "{e}");
    }
}
