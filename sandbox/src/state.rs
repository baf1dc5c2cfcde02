//! Sandboxes on record: one directory per sandbox under the state root
//! (`/run/isola` by default), holding `state.json`, the vsock sockets and logs.
//! A sandbox whose VMM is gone is stale: its helpers are killed and its directory removed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hypervisor::HypervisorKind;

pub fn default_root() -> PathBuf {
    std::env::var_os("ISOLA_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/run/isola"))
}

/// Where the warm pool of sandboxes for `state_root` lives (same filesystem, so a
/// claim is a rename; see `crate::pool`).
pub fn pool_root(state_root: &Path) -> PathBuf {
    let mut s = state_root.as_os_str().to_owned();
    s.push("-pool");
    PathBuf::from(s)
}

/// The state root and its pool's, given either of them.
pub fn roots(state_root: &Path) -> [PathBuf; 2] {
    let s = state_root.as_os_str().to_string_lossy();
    match s.strip_suffix("-pool") {
        Some(main) => [PathBuf::from(main), state_root.to_path_buf()],
        None => [state_root.to_path_buf(), pool_root(state_root)],
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxState {
    pub id: String,
    pub hypervisor: HypervisorKind,
    pub vmm_pid: i32,
    /// The vhost-user vsock daemon (QEMU backend).
    pub helper_pids: Vec<i32>,
    /// Hybrid-vsock socket of the agent.
    pub vsock_uds: PathBuf,
    /// The container running in it, for `isola exec/kill`.
    pub container: Option<String>,
    pub created_unix: u64,
    /// The host directory shared with the guest over virtio-fs (QEMU with virtiofsd).
    #[serde(default)]
    pub shared_dir: Option<PathBuf>,
    /// Address and tap on the isola0 bridge, when networked.
    #[serde(default)]
    pub net: Option<crate::net::NetState>,
    /// The process creating the sandbox: while it lives and the VMM is not started,
    /// the sandbox is being created; once it died, what it left is cleaned at once.
    #[serde(default)]
    pub creator: Option<Creator>,
    /// A host cgroup given by the caller (a pod's `cgroupsPath`), removed on cleanup;
    /// without one the sandbox's is found from its directory.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// Ports published on the host (`-p`), relayed by its `isola-ports` helper.
    #[serde(default)]
    pub ports: Vec<crate::backend::ports::PortSpec>,
    /// Serials of the read-only disks its guest was given (image root filesystems).
    #[serde(default)]
    pub disks: Vec<String>,
    /// The template it was restored from (its key), if it did not boot cold.
    #[serde(default)]
    pub template: Option<String>,
    /// The host uid and gid its unprivileged processes run as, its own among live
    /// sandboxes ([`crate::identity`]); none for a sandbox from before identities.
    #[serde(default)]
    pub uid: Option<u32>,
    /// The VM's memory as booted, and whether it has a balloon to resize it with.
    #[serde(default)]
    pub memory: Option<VmMemory>,
}

/// What a running sandbox's memory can do ([`crate::sandbox::resize`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmMemory {
    /// Guest RAM the VM booted with: the most a resize can give its guest.
    pub mem_mib: u64,
    pub balloon: bool,
}

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    pub pid: i32,
    pub start_ticks: u64,
}

impl Creator {
    pub fn me() -> Option<Self> {
        Self::of(std::process::id() as i32)
    }

    pub fn of(pid: i32) -> Option<Self> {
        crate::procfs::start_ticks(pid).map(|start_ticks| Creator { pid, start_ticks })
    }

    pub fn alive(&self) -> bool {
        crate::procfs::start_ticks(self.pid) == Some(self.start_ticks)
    }
}

impl SandboxState {
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        crate::files::write_json_atomic(&dir.join("state.json"), self)
    }

    /// Its agent, reached from another process than the one that started it.
    pub fn agent(&self, timeout: std::time::Duration) -> crate::agent::Agent {
        crate::agent::Agent::new(&self.vsock_uds, timeout)
    }

    /// A handle on its container `id`.
    pub fn container(&self, id: &str, timeout: std::time::Duration) -> crate::container::Container {
        crate::container::Container::existing(self.agent(timeout), self.shared_dir.clone(), id)
    }

    /// The uid (and gid) its unprivileged processes run as.
    pub fn host_uid(&self) -> u32 {
        self.uid.unwrap_or(crate::backend::isola_vmm::NOBODY)
    }

    pub fn load(dir: &Path) -> std::io::Result<Self> {
        serde_json::from_slice(&std::fs::read(dir.join("state.json"))?).map_err(std::io::Error::other)
    }
}

/// Is `pid` alive and still the program we started (not a recycled pid)?
pub fn process_matches(pid: i32, exe_name: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    crate::procfs::running(pid) && String::from_utf8_lossy(argv0).ends_with(exe_name)
}

/// Kills whatever of the sandbox still runs and removes its directory. A pid is only
/// killed while it still runs the program we started (pids get recycled).
pub fn cleanup(dir: &Path, st: Option<&SandboxState>) {
    if let Some(st) = st {
        let kill = |pid: i32| {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        };
        if st.vmm_pid > 0 && process_matches(st.vmm_pid, crate::backend::vmm_exe(st.hypervisor)) {
            kill(st.vmm_pid);
        }
        for &pid in &st.helper_pids {
            if pid > 0 && crate::backend::HELPER_EXES.iter().any(|exe| process_matches(pid, exe)) {
                kill(pid);
            }
        }
    }
    match st.and_then(|s| s.net.as_ref()) {
        Some(crate::net::NetState { pod: Some(pod), .. }) => pod.undo(),
        Some(n) => crate::netfilter::release_port(&n.tap),
        None => {}
    }
    crate::cgroup::remove_for(dir);
    if let Some(cg) = st.and_then(|s| s.cgroup.as_ref()) {
        crate::cgroup::remove_dir_of(cg);
    }
    // Binds of user directories live under the sandbox: unmount before deleting.
    if let Err(e) = crate::mounts::unmount_and_remove(dir) {
        log::warn!("cleaning {}: {e}", dir.display());
    }
    // Every process that ran as its uid is gone: the uid may serve another sandbox.
    // One killed before it recorded its uid leaves a lease that names only its root.
    let leases = crate::identity::default_leases();
    match (st.and_then(|s| s.uid), dir.parent()) {
        (Some(uid), Some(parent)) => crate::identity::release(&leases, uid, &roots(parent)[0], &holds_uid),
        (None, Some(parent)) => crate::identity::release_unrecorded(&leases, &roots(parent)[0], &holds_uid),
        _ => {}
    }
}

/// Whether a sandbox under `root` or its pool records `uid`, staged ones included
/// (what keeps a uid lease held: [`crate::identity`]).
pub fn holds_uid(root: &Path, uid: u32) -> bool {
    roots(root).iter().any(|r| {
        let Ok(entries) = std::fs::read_dir(r) else { return false };
        entries.flatten().any(|e| SandboxState::load(&e.path()).is_ok_and(|s| s.uid == Some(uid)))
    })
}

/// Where a sandbox's directory is made before it takes its name: `.new-PID-TICKS-ID`,
/// so that a creator killed before its first state.json is seen dead from the name.
pub fn staging_dir(root: &Path, id: &str, creator: Option<Creator>) -> PathBuf {
    let (pid, ticks) = creator.map_or((0, 0), |c| (c.pid, c.start_ticks));
    root.join(format!("{STAGING_PREFIX}{pid}-{ticks}-{id}"))
}

pub const STAGING_PREFIX: &str = ".new-";

/// The creator a staging directory's name records (None: not one, or unknown).
pub(crate) fn staging_creator(name: &str) -> Option<Creator> {
    let mut parts = name.strip_prefix(STAGING_PREFIX)?.splitn(3, '-');
    let pid = parts.next()?.parse().ok().filter(|p| *p > 0)?;
    let start_ticks = parts.next()?.parse().ok()?;
    Some(Creator { pid, start_ticks })
}

/// Renames a staged directory to its sandbox name, failing with AlreadyExists when the
/// name is taken (a plain rename would replace an empty directory of that name).
pub fn take_name(staged: &Path, dir: &Path) -> std::io::Result<()> {
    nix::fcntl::renameat2(None, staged, None, dir, nix::fcntl::RenameFlags::RENAME_NOREPLACE)
        .map_err(std::io::Error::from)
}

/// Seconds since the epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Sandboxes with a live VMM; stale entries are cleaned on the way.
pub fn list(root: &Path) -> Vec<(PathBuf, SandboxState)> {
    let Ok(entries) = std::fs::read_dir(root) else { return vec![] };
    let mut live = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        if !dir.is_dir() {
            continue;
        }
        match SandboxState::load(&dir) {
            Ok(st) if process_matches(st.vmm_pid, crate::backend::vmm_exe(st.hypervisor)) => live.push((dir, st)),
            // Its creator still runs and ends what it started itself (a restore that
            // failed and boots cold again, a foreground run whose VMM died).
            Ok(st) if st.creator.is_some_and(|c| c.alive()) => {}
            // Helpers started, the VMM not yet, by a creator it does not name: being
            // created right now unless old.
            Ok(st) if st.vmm_pid == 0 && st.creator.is_none() && now_unix().saturating_sub(st.created_unix) < 60 => {}
            Ok(st) => cleanup(&dir, Some(&st)),
            // Staged by a creator that died before it wrote a state: nothing started yet.
            Err(_) if e.file_name().to_str().and_then(staging_creator).is_some_and(|c| !c.alive()) => {
                cleanup(&dir, None)
            }
            // Being created right now, or debris: only old debris goes.
            Err(_) => {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .map(|t| t.elapsed().unwrap_or_default().as_secs() > 60)
                    .unwrap_or(true);
                if old {
                    cleanup(&dir, None);
                }
            }
        }
    }
    live.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    live
}

/// A recorded sandbox `id` with nothing started, for unit tests.
#[cfg(test)]
pub(crate) fn test_state(id: &str) -> SandboxState {
    tests::state(id, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn state(id: &str, pid: i32) -> SandboxState {
        SandboxState {
            id: id.into(),
            hypervisor: HypervisorKind::Qemu,
            vmm_pid: pid,
            helper_pids: vec![],
            vsock_uds: "/x".into(),
            container: None,
            created_unix: 0,
            shared_dir: None,
            net: None,
            creator: None,
            cgroup: None,
            ports: vec![],
            template: None,
            uid: None,
            memory: None,
            disks: vec![],
        }
    }

    /// A uid stays held by a sandbox under the root or its pool (a claimed member keeps
    /// it), staged or named, and by nothing else.
    #[test]
    fn a_uid_is_held_by_a_recorded_sandbox_under_the_root_or_its_pool() {
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path().join("run");
        let staged = pool_root(&root).join(".new-1-2-p");
        std::fs::create_dir_all(&staged).expect("dir");
        SandboxState { uid: Some(7), ..state("p", 0) }.save(&staged).expect("save");
        assert!(holds_uid(&root, 7) && holds_uid(&pool_root(&root), 7));
        assert!(!holds_uid(&root, 8), "another uid");
        assert!(!holds_uid(&d.path().join("other"), 7), "another root");
        std::fs::remove_dir_all(&staged).expect("rm");
        assert!(!holds_uid(&root, 7), "gone with its directory");
    }

    #[test]
    fn stale_sandboxes_are_cleaned_and_live_ones_listed() {
        let root = tempfile::tempdir().expect("tmp");
        let dead = root.path().join("dead");
        std::fs::create_dir_all(&dead).expect("dir");
        state("dead", i32::MAX - 1).save(&dead).expect("save");
        // A live process that is not a VMM is not ours either.
        let me = root.path().join("impostor");
        std::fs::create_dir_all(&me).expect("dir");
        state("impostor", std::process::id() as i32).save(&me).expect("save");
        // One whose helpers run but whose VMM is not started yet is left alone.
        let starting = root.path().join("starting");
        std::fs::create_dir_all(&starting).expect("dir");
        SandboxState { created_unix: now_unix(), ..state("starting", 0) }.save(&starting).expect("save");
        // Being started by a live creator (us), and by one that died (a recent state).
        let by_me = root.path().join("by-me");
        std::fs::create_dir_all(&by_me).expect("dir");
        SandboxState { created_unix: now_unix(), creator: Creator::me(), ..state("by-me", 0) }
            .save(&by_me)
            .expect("save");
        let orphan = root.path().join("orphan");
        std::fs::create_dir_all(&orphan).expect("dir");
        let dead_creator = Creator::me().map(|c| Creator { start_ticks: c.start_ticks + 1, ..c });
        assert!(dead_creator.is_some_and(|c| !c.alive()), "a different start time is another process");
        SandboxState { created_unix: now_unix(), creator: dead_creator, ..state("orphan", 0) }
            .save(&orphan)
            .expect("save");
        assert!(list(root.path()).is_empty());
        assert!(!dead.exists() && !me.exists(), "stale entries removed");
        assert!(starting.exists() && by_me.exists(), "a sandbox being started is not cleaned");
        assert!(!orphan.exists(), "a sandbox whose creator died is cleaned at once");
    }

    #[test]
    fn a_staged_directory_of_a_dead_creator_goes_at_once() {
        let root = tempfile::tempdir().expect("tmp");
        let dead = Creator { pid: i32::MAX - 1, start_ticks: 1 };
        let staged = staging_dir(root.path(), "s1", Some(dead));
        std::fs::create_dir(&staged).expect("dir");
        let mine = staging_dir(root.path(), "s2", Creator::me());
        std::fs::create_dir(&mine).expect("dir");
        assert!(list(root.path()).is_empty());
        assert!(!staged.exists(), "a dead creator's staged directory stays");
        assert!(mine.exists(), "a live creator's staged directory went");
        take_name(&mine, &root.path().join("s2")).expect("rename");
        std::fs::create_dir(&mine).expect("dir");
        let taken = take_name(&mine, &root.path().join("s2")).expect_err("name taken");
        assert_eq!(taken.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(staging_creator(".new-12-34-a-b"), Some(Creator { pid: 12, start_ticks: 34 }));
        assert_eq!(staging_creator(".new-0-0-a"), None);
        assert_eq!(staging_creator("a"), None);
    }

    #[test]
    fn state_round_trips() {
        let d = tempfile::tempdir().expect("tmp");
        let s = state("a", 5);
        s.save(d.path()).expect("save");
        assert_eq!(SandboxState::load(d.path()).expect("load"), s);
    }

    #[test]
    fn our_own_process_matches_its_name_only() {
        let me = std::process::id() as i32;
        let exe = std::env::current_exe().expect("exe");
        let name = exe.file_name().expect("name").to_string_lossy().to_string();
        assert!(process_matches(me, &name));
        assert!(!process_matches(me, "qemu-system-x86_64"));
        assert!(!process_matches(i32::MAX - 1, &name));
    }
}
