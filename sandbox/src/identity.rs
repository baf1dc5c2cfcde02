//! One host identity per sandbox, as Firecracker's jailer gives each microVM its own
//! uid: every unprivileged process of a sandbox (its VMM, QEMU's helpers, the port
//! forwarder, the console pump) runs as a uid and gid allocated to it alone from a
//! configured range, so a helper a guest takes over can neither connect to, read,
//! trace nor signal another tenant's.
//!
//! A uid is leased by a file `<leases>/<uid>` naming the state root of the sandbox
//! that holds it. A lease holds while a sandbox under that root (or its warm pool)
//! records the uid in its state; so a holder killed at any point leaves nothing that
//! keeps the uid taken once its directory is cleaned, and a claim from the warm pool
//! (a rename within the roots) keeps it. Allocation and release happen under one lock.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Whether a live sandbox under a state root records a uid (`crate::state::holds_uid`;
/// passed in, so leases know nothing of the state's format).
pub type Held<'a> = &'a dyn Fn(&Path, u32) -> bool;

/// Above the ranges distributions give users (1000…), subordinate ids (100000…) and
/// systemd's containers (524288…0x6FFFFFFF): ids nothing else on a host owns.
pub const DEFAULT_FIRST: u32 = 0x7000_0000;
pub const DEFAULT_COUNT: u32 = 65536;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the sandbox uid lease directory {path}: {source}")]
    Leases { path: String, source: std::io::Error },
    #[error("every uid of {first}..{} is held by a live sandbox", u64::from(*first) + u64::from(*count))]
    Exhausted { first: u32, count: u32 },
    #[error("sandbox uid range {first}+{count}: {reason}")]
    BadRange { first: u32, count: u32, reason: &'static str },
}

/// The uids sandboxes are given (`sandbox_uids` in config.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub first: u32,
    pub count: u32,
}

impl Default for Range {
    fn default() -> Self {
        Range { first: DEFAULT_FIRST, count: DEFAULT_COUNT }
    }
}

impl Range {
    /// A range of real, unprivileged ids: not root, not "nobody", no wrap, not -1.
    pub fn validate(&self) -> Result<(), IdentityError> {
        let bad = |reason| Err(IdentityError::BadRange { first: self.first, count: self.count, reason });
        let end = u64::from(self.first) + u64::from(self.count);
        if self.count == 0 {
            return bad("it is empty");
        }
        if self.first < 1000 {
            return bad("it starts among system ids (below 1000)");
        }
        if end > u64::from(u32::MAX) {
            return bad("it reaches the invalid id 4294967295");
        }
        if (u64::from(self.first)..end).contains(&65534) {
            return bad("it holds 65534 (nobody), which other programs share");
        }
        Ok(())
    }
}

/// Where leases live: one directory for the host, whatever the state root, so two
/// state roots never hand out the same uid.
pub fn default_leases() -> PathBuf {
    std::env::var_os("ISOLA_UID_LEASES").map(PathBuf::from).unwrap_or_else(|| "/run/isola-uids".into())
}

fn leases_err(p: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Leases { path: p.display().to_string(), source }
}

/// The lease lock, its directory made root-only first.
fn lock(leases: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, IdentityError> {
    match std::fs::DirBuilder::new().mode(0o700).create(leases) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(leases_err(leases)(e)),
        _ => {}
    }
    let f = crate::files::create_private(&leases.join(".lock")).map_err(leases_err(leases))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| leases_err(leases)(e.into()))
}

fn lease_holder(path: &Path) -> Option<PathBuf> {
    std::fs::read_to_string(path).ok().map(|s| PathBuf::from(s.trim_end_matches('\n')))
}

/// Allocates a uid of `range` for a sandbox under the state root `root`, starting
/// where `seed` (its name) hashes to, and has `record` write it into the sandbox's
/// state while the lock is held, so no other allocation can see it free.
pub fn allocate(
    leases: &Path,
    range: Range,
    root: &Path,
    seed: &str,
    held: Held<'_>,
    record: impl FnOnce(u32) -> std::io::Result<()>,
) -> Result<u32, IdentityError> {
    range.validate()?;
    let _lock = lock(leases)?;
    let start = crate::names::name_hash(seed) % range.count;
    for i in 0..range.count {
        let uid = range.first + (start + i) % range.count;
        let path = leases.join(uid.to_string());
        if let Some(holder) = lease_holder(&path) {
            if held(&holder, uid) {
                continue;
            }
            // Its sandbox is gone (killed before or during its cleanup): free again.
            let _ = std::fs::remove_file(&path);
        }
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(leases_err(leases)(e)),
        };
        f.write_all(root.as_os_str().as_encoded_bytes()).map_err(leases_err(leases))?;
        if let Err(e) = record(uid) {
            let _ = std::fs::remove_file(&path);
            return Err(leases_err(root)(e));
        }
        return Ok(uid);
    }
    Err(IdentityError::Exhausted { first: range.first, count: range.count })
}

/// Gives `uid` back once no sandbox under `root` (the one just removed was its
/// holder) records it.
pub fn release(leases: &Path, uid: u32, root: &Path, held: Held<'_>) {
    let Ok(_lock) = lock(leases) else { return };
    let path = leases.join(uid.to_string());
    let Some(holder) = lease_holder(&path) else { return };
    if holder == root && !held(&holder, uid) {
        let _ = std::fs::remove_file(&path);
    }
}

/// Gives back every lease of `root` that no sandbox records: what a sandbox killed
/// between taking its lease and recording it in its state leaves (an allocation holds
/// the lock across both, so none in progress is taken for one).
pub fn release_unrecorded(leases: &Path, root: &Path, held: Held<'_>) {
    let Ok(_lock) = lock(leases) else { return };
    let Ok(entries) = std::fs::read_dir(leases) else { return };
    for e in entries.flatten() {
        let Some(uid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let path = e.path();
        // Empty: killed before it wrote its root; ours to free like any other.
        let holder = lease_holder(&path);
        let ours = holder.as_deref().is_some_and(|h| h == root || h.as_os_str().is_empty());
        if ours && !held(root, uid) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;

    #[test]
    fn live_sandboxes_never_share_a_uid_and_a_gone_one_frees_its_own() {
        let d = tempfile::tempdir().expect("tmp");
        let leases = d.path().join("leases");
        let (root, other) = (d.path().join("run"), d.path().join("elsewhere"));
        // (root, uid) pairs recorded by live sandboxes, as the states would say.
        let live: RefCell<HashSet<(PathBuf, u32)>> = RefCell::default();
        let held = |r: &Path, uid: u32| live.borrow().contains(&(r.to_path_buf(), uid));
        let take = |r: &Path, name: &str| {
            allocate(&leases, Range { first: 200_000, count: 2 }, r, name, &held, |uid| {
                live.borrow_mut().insert((r.to_path_buf(), uid));
                Ok(())
            })
        };
        let ua = take(&root, "a").expect("a");
        let ub = take(&other, "b").expect("b, under another state root");
        assert_ne!(ua, ub, "two state roots never share a uid");
        assert!(matches!(take(&root, "c"), Err(IdentityError::Exhausted { .. })), "a range of two is full");
        // a is killed -9 and its directory cleaned without a release: its uid is free.
        live.borrow_mut().remove(&(root.clone(), ua));
        assert_eq!(take(&root, "c").expect("c gets a's"), ua);
        // A failed record leaves no lease behind.
        live.borrow_mut().remove(&(root.clone(), ua));
        let failed = allocate(&leases, Range { first: 200_000, count: 2 }, &root, "d", &held, |_| {
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert!(!leases.join(ua.to_string()).exists(), "no lease from a failed record");
        // A release by a root that does not hold the lease leaves it alone.
        release(&leases, ub, &root, &held);
        assert!(leases.join(ub.to_string()).exists());
        live.borrow_mut().remove(&(other.clone(), ub));
        release(&leases, ub, &other, &held);
        assert!(!leases.join(ub.to_string()).exists(), "released with its sandbox");
    }

    /// A sandbox killed after taking its lease and before recording it: its cleanup
    /// knows no uid, and frees every lease of its root that no sandbox records — not a
    /// recorded one, nor another root's.
    #[test]
    fn a_lease_never_recorded_is_freed_by_its_roots_cleanup() {
        let d = tempfile::tempdir().expect("tmp");
        let leases = d.path().join("leases");
        let (root, other) = (d.path().join("run"), d.path().join("elsewhere"));
        let live: RefCell<HashSet<(PathBuf, u32)>> = RefCell::default();
        let held = |r: &Path, uid: u32| live.borrow().contains(&(r.to_path_buf(), uid));
        let range = Range { first: 300_000, count: 8 };
        let take = |r: &Path, name: &str, record: bool| {
            allocate(&leases, range, r, name, &held, |uid| {
                if record {
                    live.borrow_mut().insert((r.to_path_buf(), uid));
                }
                Ok(())
            })
            .expect("uid")
        };
        let kept = take(&root, "kept", true);
        let orphan = take(&root, "orphan", false);
        let theirs = take(&other, "theirs", false);
        // Killed before it wrote its root into the lease at all.
        std::fs::write(leases.join("300007"), "").expect("empty lease");
        release_unrecorded(&leases, &root, &held);
        assert!(leases.join(kept.to_string()).exists(), "a recorded lease stays");
        assert!(!leases.join(orphan.to_string()).exists(), "the unrecorded one is freed");
        assert!(!leases.join("300007").exists(), "and an empty one");
        assert!(leases.join(theirs.to_string()).exists(), "another root's is not ours to free");
    }

    #[test]
    fn ranges_that_would_share_an_id_with_the_host_are_refused() {
        assert!(Range::default().validate().is_ok());
        for (first, count) in [(0, 10), (65000, 1000), (u32::MAX - 5, 10), (5000, 0)] {
            assert!(Range { first, count }.validate().is_err(), "{first}+{count}");
        }
    }
}
