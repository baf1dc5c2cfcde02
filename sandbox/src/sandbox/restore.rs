//! A sandbox restored from a template instead of booted ([`crate::template`]), and the
//! control API a template's own VMM serves.

use std::time::Duration;

use super::{io, Sandbox, SandboxError, SandboxOptions, API_SOCK};
use crate::backend::virtiofsd;
use crate::template::Template;

/// A restore that has not reached its agent by then is given up for a cold boot (a
/// restore takes milliseconds; a wedged one must not cost the whole boot timeout).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(10);

impl Sandbox {
    /// The watchdog armed, the agent answering, and a restored guest told so.
    pub(super) fn come_up(&mut self, timeout: Duration, restored: bool) -> Result<(), SandboxError> {
        self.arm_watchdog()?;
        self.wait_for_agent(timeout, restored)?;
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
        let timeout = RESTORE_TIMEOUT.min(opts.boot.timeout);
        let r = self.spawn(opts, Some(&t.snapshot_dir())).and_then(|()| self.come_up(timeout, true));
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
