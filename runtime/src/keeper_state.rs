//! What a keeper holds while its container lives: the task logic with the VM, the
//! container's record (saved on every change), its exec relays and its spec.

use std::sync::{Arc, Mutex};

use isola_task::pod::Pod;
use oci_spec::runtime::Spec;

use crate::state::{Dir, Record};

pub struct Keeper {
    pub pod: Arc<Pod>,
    pub dir: Dir,
    pub record: Mutex<Record>,
    /// Live exec relays, for `ps`.
    pub relays: Mutex<Vec<i32>>,
    pub spec: Spec,
}

impl Keeper {
    pub fn id(&self) -> String {
        self.dir.id()
    }

    pub fn set_status(&self, status: &str, exit: Option<i32>) {
        if let Ok(mut r) = self.record.lock() {
            r.status = status.into();
            if exit.is_some() {
                r.exit_code = exit;
            }
            if let Err(e) = self.dir.save(&r) {
                log::warn!("{e}");
            }
        }
    }

    pub fn record(&self) -> Record {
        self.record.lock().map(|r| r.clone()).unwrap_or_default()
    }
}
