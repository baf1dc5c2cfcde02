//! Files the host keeps for sandboxes and tasks: private to their owner, and replaced
//! whole (a reader, or a crash, never sees half of one).

use std::io::Write;
use std::path::Path;

/// Creates (or truncates) a file only its owner may read: state and logs of a sandbox.
/// A symlink in its place is refused (ELOOP), never followed to a file elsewhere.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// A new private file at `path`: whatever was there (a stale temporary, or a symlink
/// someone planted) is unlinked first, and the file is made with O_EXCL, so the bytes
/// written land in this new inode only.
fn create_new_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Makes `dir` (and missing parents) with the last one closed to everyone but its
/// owner and `mode`'s other bits; an existing one is brought to `mode` too, as tenant
/// data under it must not be readable by another uid (runc keeps its root 0700).
pub fn private_dir_all(dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir)?;
            if !meta.is_dir() {
                return Err(std::io::Error::other(format!("{} is not a directory", dir.display())));
            }
            if meta.permissions().mode() & 0o777 != mode {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
            }
            Ok(())
        }
        r => r,
    }
}

/// Replaces `path` with `bytes` through a private temporary file beside it and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = create_new_private(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// [`write_atomic`] of `value` as JSON.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// As a local user would try: a state root made (or left 0755 by an older
    /// version) is closed to uid 1000 afterwards; a symlink in its place is refused.
    #[test]
    fn a_private_directory_is_closed_to_other_users_even_if_it_existed_open() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (does not skip)");
        let d = tempfile::tempdir().expect("tmp");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("open tmp");
        let root = d.path().join("runtime");
        std::fs::create_dir(&root).expect("old root");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("0755");
        std::fs::write(root.join("config.json"), "DB_PASSWORD=x").expect("file");
        let reads = |p: &Path| {
            std::process::Command::new("setpriv")
                .args(["--reuid=1000", "--regid=1000", "--clear-groups", "cat"])
                .arg(p)
                .output()
                .expect("setpriv")
                .status
                .success()
        };
        assert!(reads(&root.join("config.json")), "control: readable before");
        private_dir_all(&root, 0o700).expect("private");
        assert!(!reads(&root.join("config.json")), "uid 1000 reads nothing under it");
        private_dir_all(&d.path().join("new/deeper"), 0o700).expect("new");
        let mode = std::fs::metadata(d.path().join("new/deeper")).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::os::unix::fs::symlink("/etc", d.path().join("link")).expect("link");
        assert!(private_dir_all(&d.path().join("link"), 0o700).is_err(), "a symlink is not made private");
        assert_eq!(std::fs::metadata("/etc").expect("etc").permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn a_replaced_file_is_whole_private_and_leaves_no_temporary() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("state.json");
        std::fs::write(&p, "old").expect("old");
        write_json_atomic(&p, &serde_json::json!({ "a": 1 })).expect("write");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
        assert_eq!(v["a"], 1);
        assert_eq!(std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(d.path()).expect("dir").count(), 1, "no temporary left");
        assert!(write_atomic(&d.path().join("missing/x"), b"x").is_err());
    }

    /// Someone who can write in the directory plants the temporary's name as a symlink
    /// to a file of theirs to be overwritten (a pid file's, a state file's): the write
    /// lands in the new file, the symlink's target is untouched.
    #[test]
    fn a_symlink_planted_at_the_temporary_or_the_file_is_not_followed() {
        let d = tempfile::tempdir().expect("tmp");
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").expect("victim");
        let p = d.path().join("init.pid");
        std::os::unix::fs::symlink(&victim, d.path().join(".init.pid.tmp")).expect("plant");
        write_atomic(&p, b"42").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious");
        assert_eq!(std::fs::read_to_string(&p).expect("pid"), "42");
        assert!(!std::fs::symlink_metadata(&p).expect("meta").file_type().is_symlink());
        let log = d.path().join("log");
        std::os::unix::fs::symlink(&victim, &log).expect("plant");
        assert!(create_private(&log).is_err(), "a symlink is refused");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious");
    }
}
