//! A hostile container's answer to `isola cp` out of it: any bytes as the tar
//! unpacked on the host. Only files, directories and symlinks, never outside the
//! destination, never a set-id bit, never a panic.
#![no_main]

use std::os::unix::fs::PermissionsExt;

use isola_image::extract::extract_untrusted;
use libfuzzer_sys::fuzz_target;

fn walk(dir: &std::path::Path, out: &mut Vec<std::fs::Metadata>) {
    for e in std::fs::read_dir(dir).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default() {
        let Ok(m) = std::fs::symlink_metadata(e.path()) else { continue };
        if m.is_dir() {
            walk(&e.path(), out);
        }
        out.push(m);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(outer) = tempfile::tempdir() else { return };
    let root = outer.path().join("root");
    if std::fs::create_dir(&root).is_err() {
        return;
    }
    let _ = extract_untrusted(data, &root, 64 << 20);
    let beside: Vec<_> = std::fs::read_dir(outer.path()).map(|d| d.flatten().collect()).unwrap_or_default();
    assert_eq!(beside.len(), 1, "a copy wrote outside its destination: {beside:?}");
    let mut all = Vec::new();
    walk(&root, &mut all);
    for m in all {
        let t = m.file_type();
        assert!(t.is_file() || t.is_dir() || t.is_symlink(), "a special file came out: {t:?}");
        assert_eq!(m.permissions().mode() & 0o7000, 0, "a set-id or sticky bit came out");
    }
});
