//! The pod's VM itself: booted for its owner, watched, stopped.

use std::sync::Arc;
use std::time::Duration;

use super::{Inner, Pod, VM_GONE_EXIT};
use crate::error::TaskError;
use crate::guest::BootRequest;

impl Pod {
    /// Boots the pod's VM for `owner` and watches it. First the record in `bundle`: a
    /// shim killed during the boot leaves a VM that `delete` must still find (its
    /// processes are found by its cgroup).
    pub(super) fn boot_vm(
        self: &Arc<Self>,
        inner: &mut Inner,
        req: &BootRequest,
        bundle: &str,
        owner: &str,
    ) -> Result<(), TaskError> {
        let planned =
            crate::bundle::BundleRecord { vm: self.booter.state_dir_for(&req.name), owner: true, ..Default::default() };
        planned.save(bundle);
        let guest = self.booter.boot(req).inspect_err(|_| crate::bundle::BundleRecord::remove(bundle))?;
        inner.shared = guest.shared_dir();
        inner.guest = Some(guest);
        inner.owner = Some(owner.to_string());
        self.watch_vm();
        Ok(())
    }

    /// Polls the VM's processes; when one dies, every task exits and the rest is cleaned.
    pub(super) fn watch_vm(self: &Arc<Self>) {
        let pod = Arc::downgrade(self);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let Some(pod) = pod.upgrade() else { return };
            let Some(guest) = pod.lock().ok().and_then(|i| i.guest.clone()) else { return };
            if guest.alive() {
                continue;
            }
            log::warn!("the pod's VM died; reporting its tasks as exited");
            guest.stop();
            if let Ok(mut inner) = pod.lock() {
                inner.guest = None;
                pod.exit_all(&mut inner);
                pod.sandbox_ended(&mut inner, VM_GONE_EXIT);
            }
            return;
        });
    }

    /// Stops the VM (if any) and forgets it.
    pub(super) fn end_vm(inner: &mut Inner) {
        if let Some(g) = inner.guest.take() {
            g.stop();
        }
        inner.owner = None;
    }

    /// The shim is going away: no VM may stay behind it.
    pub fn shutdown(&self) {
        if let Ok(mut inner) = self.lock() {
            Self::end_vm(&mut inner);
        }
    }

    pub fn vmm_pid(&self) -> u32 {
        self.lock().ok().and_then(|i| i.guest.as_ref().map(|g| g.vmm_pid())).unwrap_or(0)
    }
}
