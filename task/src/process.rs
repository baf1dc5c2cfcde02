//! A task's processes as the shim tracks them: status, exit, host stand-in, stdio.

use std::collections::HashMap;

use std::time::SystemTime;

use crate::spec::Role;
use crate::standin::StandIn;
use crate::stdio::{Bridge, StdioPaths};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Exit {
    pub code: u32,
    pub at: SystemTime,
}

pub struct Proc {
    pub stdio: StdioPaths,
    /// The host pid containerd sees: the process's stand-in ([`crate::standin`]).
    pub pid: u32,
    /// The pid in the guest, once started (0 before).
    pub guest_pid: u32,
    pub status: Status,
    pub exit: Option<Exit>,
    pub(crate) bridge: Option<Bridge>,
    pub(crate) standin: Option<StandIn>,
}

impl Proc {
    pub(crate) fn new(stdio: StdioPaths, standin: StandIn, bridge: Option<Bridge>) -> Self {
        Proc {
            stdio,
            pid: standin.pid(),
            guest_pid: 0,
            status: Status::Created,
            exit: None,
            bridge,
            standin: Some(standin),
        }
    }
}

pub struct Container {
    pub bundle: String,
    pub role: Role,
    pub init: Proc,
    pub execs: HashMap<String, Proc>,
    /// A pod member's own host cgroup (its `cgroupsPath`), carrying its limits and its
    /// stand-in; the VM itself is in the pod sandbox's.
    pub host_cgroup: Option<isola_sandbox::limits_cgroup::LimitsCgroup>,
}
