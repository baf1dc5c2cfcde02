//! The warm pool: booted, never-used sandboxes waiting under their own state root
//! (`<state root>-pool`), one set per configuration (backend, kernel, initrd, command
//! line, memory, vCPUs, network). A pool member is an ordinary detached sandbox: no
//! daemon keeps it. [`claim`] hands one out atomically and once: its directory is
//! renamed into the state root under the caller's name (`renameat2` without replace),
//! so of two claimers exactly one gets it, and a used sandbox never goes back.

use std::path::{Path, PathBuf};

use crate::hypervisor::{BootSpec, HypervisorKind};
use crate::options::NetworkMode;
use crate::state::{self, SandboxState};

/// Members per configuration at most (each holds a VM's memory).
pub const MAX_SIZE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("sandbox {0} already exists")]
    Exists(String),
    #[error("invalid sandbox id {0:?}: use 1-64 of [A-Za-z0-9_.-]")]
    BadId(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("a pool holds at most {MAX_SIZE} sandboxes per configuration, not {0}")]
    TooLarge(usize),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PoolError {
    let what = what.into();
    move |source| PoolError::Io { what, source }
}

pub use crate::state::{pool_root as root, roots};

/// What a pool member must match to stand in for a fresh sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolKey(String);

impl PoolKey {
    /// The kernel and initrd count by path, size and modification time: a rebuilt
    /// guest never reuses sandboxes booted from the old one.
    pub fn new(hypervisor: HypervisorKind, boot: &BootSpec, network: NetworkMode) -> Self {
        let bridge = network != NetworkMode::None;
        let text = format!("{hypervisor}|{}|{:?}|bridge={bridge}", boot.identity(), boot.accel);
        PoolKey(crate::names::short_hash(&text, 6))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id prefix of this configuration's members.
    fn prefix(&self) -> String {
        format!("pool-{}-", self.0)
    }

    /// A fresh member id.
    pub fn member_id(&self) -> String {
        format!("{}{}", self.prefix(), crate::names::random_hex(4))
    }
}

/// The file a filler writes into a member once it is booted and configured: only
/// then may it be claimed.
pub const READY_FILE: &str = "pool-ready";

/// Marks a member as ready to be claimed.
pub fn mark_ready(dir: &Path) -> Result<(), PoolError> {
    std::fs::write(dir.join(READY_FILE), b"").map_err(io(format!("marking {} ready", dir.display())))
}

/// Ready members of `key`, oldest first. Dead ones are cleaned on the way, and so is
/// one left unready by a filler that died (killed while it booted it).
pub fn members(state_root: &Path, key: &PoolKey) -> Vec<(PathBuf, SandboxState)> {
    let mut m: Vec<_> = state::list(&root(state_root))
        .into_iter()
        .filter(|(_, st)| st.id.starts_with(&key.prefix()))
        .filter(|(dir, st)| {
            if dir.join(READY_FILE).exists() {
                return true;
            }
            if !st.creator.is_some_and(|c| c.alive()) {
                crate::sandbox::stop_by_state(dir, st);
            }
            false
        })
        .collect();
    m.sort_by_key(|(_, st)| st.created_unix);
    m
}

/// Every live member of every configuration.
pub fn all_members(state_root: &Path) -> Vec<(PathBuf, SandboxState)> {
    state::list(&root(state_root)).into_iter().filter(|(_, st)| st.id.starts_with("pool-")).collect()
}

/// A configuration's file beside its members: `.KEY.size` (the size asked for) or
/// `.KEY.lock` (held by its filler).
fn key_file(state_root: &Path, key: &PoolKey, what: &str) -> PathBuf {
    root(state_root).join(format!(".{}.{what}", key.as_str()))
}

/// The size `isola pool fill` asked for this configuration (refills keep to it).
pub fn wanted_size(state_root: &Path, key: &PoolKey) -> usize {
    std::fs::read_to_string(key_file(state_root, key, "size"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map_or(0, |n: usize| n.min(MAX_SIZE))
}

pub fn set_wanted_size(state_root: &Path, key: &PoolKey, n: usize) -> Result<(), PoolError> {
    if n > MAX_SIZE {
        return Err(PoolError::TooLarge(n));
    }
    let dir = root(state_root);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let p = key_file(state_root, key, "size");
    if n == 0 {
        let _ = std::fs::remove_file(&p);
        return Ok(());
    }
    std::fs::write(&p, n.to_string()).map_err(io(format!("writing {}", p.display())))
}

/// Takes one member of `key` for sandbox `name`: its directory becomes
/// `<state_root>/<name>`, its state names it and the caller as its creator. None when
/// the pool has no member (the caller boots one cold).
pub fn claim(state_root: &Path, key: &PoolKey, name: &str) -> Result<Option<(PathBuf, SandboxState)>, PoolError> {
    isola_protocol::validate_id(name).map_err(|_| PoolError::BadId(name.into()))?;
    let dest = state_root.join(name);
    for (dir, st) in members(state_root, key) {
        match state::take_name(&dir, &dest) {
            Ok(()) => return adopt_state(&dir, &dest, st, name).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(PoolError::Exists(name.into())),
            // Taken by another claimer, or gone: the next one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(format!("claiming {}", dir.display()))(e)),
        }
    }
    Ok(None)
}

/// Rewrites a moved member's state for its new name and place.
fn adopt_state(old: &Path, dir: &Path, mut st: SandboxState, name: &str) -> Result<(PathBuf, SandboxState), PoolError> {
    fn moved(p: &Path, old: &Path, dir: &Path) -> PathBuf {
        p.strip_prefix(old).map(|rel| dir.join(rel)).unwrap_or_else(|_| p.to_path_buf())
    }
    st.vsock_uds = moved(&st.vsock_uds, old, dir);
    st.shared_dir = st.shared_dir.as_deref().map(|p| moved(p, old, dir));
    // Its cgroup was named after the pool directory: recorded now, so the cleanup
    // finds it under the new name too.
    if st.cgroup.is_none() {
        st.cgroup = crate::cgroup::dir_for(old);
    }
    let _ = std::fs::remove_file(dir.join(READY_FILE));
    st.id = name.to_string();
    st.creator = state::Creator::me();
    st.created_unix = state::now_unix();
    st.save(dir).map_err(io(format!("saving the state of {name}")))?;
    Ok((dir.to_path_buf(), st))
}

/// The fill lock of one configuration: None while another filler holds it.
pub fn fill_lock(state_root: &Path, key: &PoolKey) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, PoolError> {
    let dir = root(state_root);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let p = key_file(state_root, key, "lock");
    let f = std::fs::File::create(&p).map_err(io(format!("opening {}", p.display())))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(io(format!("locking {}", p.display()))(e.into())),
    }
}

/// Empties the pool: every size asked for forgotten, every filler waited for (it sees
/// its size gone after the sandbox it is booting and lets go of its lock, so no boot
/// is left half done), then every member stopped. Returns how many.
pub fn stop_all(state_root: &Path) -> usize {
    let entries: Vec<PathBuf> =
        std::fs::read_dir(root(state_root)).into_iter().flatten().flatten().map(|e| e.path()).collect();
    for p in entries.iter().filter(|p| p.extension().is_some_and(|x| x == "size")) {
        let _ = std::fs::remove_file(p);
    }
    for p in entries.iter().filter(|p| p.extension().is_some_and(|x| x == "lock")) {
        if let Ok(f) = std::fs::File::open(p) {
            let _ = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive);
        }
    }
    let m = all_members(state_root);
    for (dir, st) in &m {
        crate::sandbox::stop_by_state(dir, st);
    }
    m.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn boot(mem_mib: u64) -> BootSpec {
        BootSpec {
            kernel: "/nonexistent/vmlinux".into(),
            initrd: None,
            cmdline: "console=ttyS0".into(),
            mem_mib,
            vcpus: 1,
            timeout: Duration::from_secs(1),
            accel: crate::hypervisor::QemuAccel::Tcg,
        }
    }

    #[test]
    fn either_root_names_both() {
        let both = [PathBuf::from("/run/isola"), PathBuf::from("/run/isola-pool")];
        assert_eq!(roots(Path::new("/run/isola")), both);
        assert_eq!(roots(Path::new("/run/isola-pool")), both);
    }

    #[test]
    fn keys_differ_by_every_setting_that_shapes_the_vm() {
        let k = PoolKey::new(HypervisorKind::Qemu, &boot(256), NetworkMode::Auto);
        assert_eq!(k, PoolKey::new(HypervisorKind::Qemu, &boot(256), NetworkMode::Bridge), "auto is the bridge");
        assert_ne!(k, PoolKey::new(HypervisorKind::Qemu, &boot(512), NetworkMode::Auto));
        assert_ne!(k, PoolKey::new(HypervisorKind::IsolaVmm, &boot(256), NetworkMode::Auto));
        assert_ne!(k, PoolKey::new(HypervisorKind::Qemu, &boot(256), NetworkMode::None));
        let id = k.member_id();
        assert!(id.starts_with(&format!("pool-{}-", k.as_str())) && id.len() == 5 + 12 + 1 + 8, "{id}");
        isola_protocol::validate_id(&id).expect("a valid sandbox id");
    }

    /// A fake member: a state whose "VMM" is this test process.
    fn member(state_root: &Path, key: &PoolKey) -> PathBuf {
        let id = key.member_id();
        let dir = root(state_root).join(&id);
        std::fs::create_dir_all(dir.join("vsock")).expect("dir");
        let st = SandboxState {
            id,
            hypervisor: HypervisorKind::IsolaVmm,
            vmm_pid: std::process::id() as i32,
            helper_pids: vec![],
            vsock_uds: dir.join("vsock/vsock.sock"),
            container: None,
            created_unix: 1,
            shared_dir: Some(dir.join("shared")),
            net: None,
            creator: None,
            cgroup: None,
            ports: vec![],
            template: None,
            uid: None,
            memory: None,
            disks: vec![],
        };
        st.save(&dir).expect("save");
        mark_ready(&dir).expect("ready");
        dir
    }

    #[test]
    fn a_member_is_claimed_once_under_the_callers_name() {
        let t = tempfile::tempdir().expect("tmp");
        let state_root = t.path().join("state");
        std::fs::create_dir_all(&state_root).expect("dir");
        let key = PoolKey::new(HypervisorKind::IsolaVmm, &boot(128), NetworkMode::None);
        let other = PoolKey::new(HypervisorKind::IsolaVmm, &boot(256), NetworkMode::None);
        // list() takes a live VMM to be isola-vmm by name: this test binary is not,
        // so members are read straight from their state here.
        let m = member(&state_root, &key);
        member(&state_root, &other);
        let st = SandboxState::load(&m).expect("state");
        std::fs::create_dir_all(state_root.join("taken")).expect("dir");
        std::fs::write(state_root.join("taken/x"), b"").expect("file");
        let taken = state::take_name(&m, &state_root.join("taken")).expect_err("name in use");
        assert_eq!(taken.kind(), std::io::ErrorKind::AlreadyExists);
        state::take_name(&m, &state_root.join("web")).expect("claim");
        let (dir, st) = adopt_state(&m, &state_root.join("web"), st, "web").expect("adopt");
        assert_eq!(st.id, "web");
        assert_eq!(st.vsock_uds, dir.join("vsock/vsock.sock"));
        assert_eq!(st.shared_dir, Some(dir.join("shared")));
        assert_eq!(st.creator, state::Creator::me());
        assert_eq!(SandboxState::load(&dir).expect("saved"), st);
        // Gone from the pool: a second claim of it finds nothing there.
        let again = state::take_name(&m, &state_root.join("web2")).expect_err("claimed twice");
        assert_eq!(again.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn the_wanted_size_is_kept_per_configuration_and_bounded() {
        let t = tempfile::tempdir().expect("tmp");
        let key = PoolKey::new(HypervisorKind::Qemu, &boot(128), NetworkMode::None);
        assert_eq!(wanted_size(t.path(), &key), 0);
        set_wanted_size(t.path(), &key, 3).expect("set");
        assert_eq!(wanted_size(t.path(), &key), 3);
        assert!(matches!(set_wanted_size(t.path(), &key, MAX_SIZE + 1), Err(PoolError::TooLarge(_))));
        set_wanted_size(t.path(), &key, 0).expect("clear");
        assert_eq!(wanted_size(t.path(), &key), 0);
    }
}
