//! A sandbox restored from a template instead of booted ([`crate::template`]), and the
//! control API a template's own VMM serves.

use std::time::Duration;

use super::{io, Sandbox, SandboxError, SandboxOptions, API_SOCK};
use crate::backend::virtiofsd;
use crate::template::Template;

/// A restored VMM whose agent has not answered this long after the VMM reported its
/// restore done (`vmm_ready`) is given up for a cold boot (a restore takes
/// milliseconds; a wedged one must not cost the whole boot timeout). The clock starts
/// at `vmm_ready`, not at spawn: a clone with virtio-fs copies the template's memory
/// before it makes its vsock socket, which took 7–9.5 s in an emulated L1, and a
/// clock from spawn gave such clones up ("cannot connect to …/vsock.sock") while
/// they were still copying.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(10);

impl Sandbox {
    /// The watchdog armed, the agent answering, and a restored guest told so.
    pub(super) fn come_up(&mut self, timeout: Duration, restored: bool) -> Result<(), SandboxError> {
        self.arm_watchdog()?;
        if restored {
            self.wait_for_restore(timeout)?;
        }
        self.wait_for_agent(if restored { RESTORE_TIMEOUT.min(timeout) } else { timeout }, restored)?;
        if restored {
            // Before anything else runs in it: the clone's RNG and clock are its own,
            // not the template's (every clone would otherwise share one RNG state).
            let entropy = crate::names::random_bytes(isola_protocol::RESTORE_ENTROPY_BYTES)
                .map_err(io("reading host entropy for the restored guest"))?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
            self.agent.call(|c| c.restored(entropy, ns)).map_err(SandboxError::Configure)?;
        }
        Ok(())
    }

    /// Restores the guest from `t`. When that fails, says why, removes the template (the
    /// next sandbox makes a good one), undoes what was started, and returns false: the
    /// caller then boots cold.
    pub(super) fn restore(&mut self, opts: &SandboxOptions, t: &Template) -> bool {
        let r = self.spawn(opts, Some(&t.snapshot_dir())).and_then(|()| self.come_up(opts.boot.timeout, true));
        let key = &t.meta.key;
        match r {
            Ok(()) => {
                self.state.template = Some(key.clone());
                if let Err(e) = self.state.save(&self.dir) {
                    log::warn!("saving the state of {}: {e}", self.id);
                }
                true
            }
            Err(e) => {
                // A helper's death may be what the watchdog saw first; the VMM's own
                // words say why.
                let vmm = super::tail(&self.dir.join("vmm.log"));
                log::warn!(
                    "template {key} could not be restored ({e}{vmm}); it is removed, and this sandbox boots cold"
                );
                self.abandon();
                if let Some(root) = t.dir.parent() {
                    let _ = crate::template::remove(root, key);
                }
                false
            }
        }
    }

    /// Waits (up to `timeout`) for the restored VMM to report its restore done: until
    /// then it is setting up (copying memory for a vhost-user device), not wedged.
    fn wait_for_restore(&mut self, timeout: Duration) -> Result<(), SandboxError> {
        let until = std::time::Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(self.dir.join("vmm.log")).unwrap_or_default();
            let ready = log
                .lines()
                .filter_map(crate::boot::parse_event)
                .any(|e| matches!(e, crate::boot::Event::Phase(p) if p.name == "vmm_ready"));
            if ready {
                return Ok(());
            }
            if let Some(e) = self.vmm_death() {
                return Err(e);
            }
            if std::time::Instant::now() > until {
                return Err(SandboxError::AgentTimeout {
                    timeout,
                    cause: "the restored VMM did not finish its restore".into(),
                    log: self.logs(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Ends every process started so far and forgets them, leaving the sandbox's
    /// directory as before its first one (its network, cgroup and state stay).
    fn abandon(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            w.disarm();
        }
        for s in self.children.iter_mut().rev() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        self.children.clear();
        self.state.helper_pids.clear();
        self.state.vmm_pid = 0;
        self.spawned = None;
        if let Some(shared) = self.state.shared_dir.take() {
            if let Err(e) = crate::mounts::unmount_and_remove(&shared) {
                log::warn!("removing {}: {e}", shared.display());
            }
        }
        for f in ["console.log", "vmm.log", virtiofsd::LOG, virtiofsd::SOCKET, API_SOCK] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let _ = std::fs::remove_file(&self.state.vsock_uds);
        if let Err(e) = self.state.save(&self.dir) {
            log::warn!("saving the state of {}: {e}", self.id);
        }
    }

    /// One command to its isola-vmm's control API (a template's VMM serves one); see
    /// [`crate::backend::isola_vmm::control`].
    pub fn control(&self, command: &str, timeout: Duration) -> Result<String, String> {
        crate::backend::isola_vmm::control(&self.dir.join(API_SOCK), command, timeout)
    }
}
