//! The vhost-user-fs frontend: feature and memory negotiation, vring handover, and a
//! worker that turns virtiofsd's call eventfds into guest interrupts.

use std::path::Path;
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::{FsError, FS_DEVICE_ID, NUM_QUEUES, QUEUE_SIZE, TAG_MAX};
use crate::virtio::snapshot::DeviceSnapshotError;
use crate::virtio::worker::{spawn, stop_pair, Worker, WorkerHandle};
use crate::virtio::{read_config_bytes, ActivateContext, ActivateError, Interrupt, VirtioDevice, INT_VRING};

const QUEUE_SIZES: [u16; NUM_QUEUES] = [QUEUE_SIZE; NUM_QUEUES];
const STOP: u32 = NUM_QUEUES as u32;

pub struct Fs {
    config: Vec<u8>,
    frontend: Frontend,
    backend_features: u64,
    worker: Option<WorkerHandle<CallForwarder>>,
    /// The running rings as handed to virtiofsd, for a snapshot.
    rings: Option<Rings>,
}

/// What a snapshot of a running device needs: guest memory (the used index lives
/// there) and each queue as it was started, with its starting position.
struct Rings {
    mem: vm_memory::GuestMemoryMmap,
    queues: Vec<virtio_queue::QueueState>,
    queue_events: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    acked_features: u64,
    with_protocol: bool,
}

fn vu(op: &'static str) -> impl Fn(vhost::Error) -> FsError {
    move |e| FsError::VhostUser { op, reason: e.to_string() }
}

impl Fs {
    /// Connects to virtiofsd's vhost-user socket and learns what it offers.
    pub fn connect(tag: &str, socket: &Path) -> Result<Self, FsError> {
        if tag.is_empty() || tag.len() > TAG_MAX {
            return Err(FsError::BadTag(tag.into()));
        }
        let frontend = Frontend::connect(socket, NUM_QUEUES as u64)
            .map_err(|e| FsError::Connect { path: socket.display().to_string(), reason: e.to_string() })?;
        frontend.set_owner().map_err(vu("SET_OWNER"))?;
        let backend_features = frontend.get_features().map_err(vu("GET_FEATURES"))?;
        // struct virtio_fs_config { u8 tag[36]; le32 num_request_queues; }
        let mut config = vec![0u8; TAG_MAX + 4];
        config[..tag.len()].copy_from_slice(tag.as_bytes());
        config[TAG_MAX..].copy_from_slice(&1u32.to_le_bytes());
        Ok(Self { config, frontend, backend_features, worker: None, rings: None })
    }

    fn setup(&mut self, ctx: &ActivateContext, calls: &[EventFd]) -> Result<bool, FsError> {
        let protocol = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        let with_protocol = self.backend_features & protocol != 0;
        let features = ctx.acked_features | (self.backend_features & protocol);
        self.frontend.set_features(features).map_err(vu("SET_FEATURES"))?;
        if with_protocol {
            let offered = self.frontend.get_protocol_features().map_err(vu("GET_PROTOCOL_FEATURES"))?;
            let wanted = offered & (VhostUserProtocolFeatures::REPLY_ACK | VhostUserProtocolFeatures::CONFIG);
            self.frontend.set_protocol_features(wanted).map_err(vu("SET_PROTOCOL_FEATURES"))?;
        }
        let regions: Result<Vec<VhostUserMemoryRegionInfo>, FsError> = ctx
            .mem
            .iter()
            .map(|r| {
                if r.file_offset().is_none() {
                    return Err(FsError::NotShared);
                }
                VhostUserMemoryRegionInfo::from_guest_region(r).map_err(vu("memory region"))
            })
            .collect();
        self.frontend.set_mem_table(&regions?).map_err(vu("SET_MEM_TABLE"))?;
        self.setup_rings(ctx, calls, with_protocol)?;
        Ok(with_protocol)
    }

    /// Hands each ring to virtiofsd, starting where the queue stands (0 for a fresh
    /// driver; a snapshot's position after a restore).
    fn setup_rings(&mut self, ctx: &ActivateContext, calls: &[EventFd], with_protocol: bool) -> Result<(), FsError> {
        for (i, q) in ctx.queues.iter().enumerate() {
            let host = |a: u64| {
                ctx.mem
                    .get_host_address(GuestAddress(a))
                    .map(|p| p as u64)
                    .map_err(|e| FsError::VhostUser { op: "vring address", reason: e.to_string() })
            };
            let cfg = VringConfigData {
                queue_max_size: q.max_size(),
                queue_size: q.size(),
                flags: 0,
                desc_table_addr: host(q.desc_table())?,
                used_ring_addr: host(q.used_ring())?,
                avail_ring_addr: host(q.avail_ring())?,
                log_addr: None,
            };
            self.frontend.set_vring_num(i, q.size()).map_err(vu("SET_VRING_NUM"))?;
            self.frontend.set_vring_addr(i, &cfg).map_err(vu("SET_VRING_ADDR"))?;
            self.frontend.set_vring_base(i, q.next_avail()).map_err(vu("SET_VRING_BASE"))?;
            self.frontend.set_vring_call(i, &calls[i]).map_err(vu("SET_VRING_CALL"))?;
            self.frontend.set_vring_kick(i, &ctx.queue_events[i]).map_err(vu("SET_VRING_KICK"))?;
            if with_protocol {
                self.frontend.set_vring_enable(i, true).map_err(vu("SET_VRING_ENABLE"))?;
            }
        }
        Ok(())
    }
}

impl Fs {
    /// Starts the rings (all of the handshake, or only the rings when virtiofsd
    /// already has the memory table: after a snapshot) and the call forwarder.
    fn start(&mut self, ctx: ActivateContext, rings_only: bool) -> Result<(), ActivateError> {
        let calls: Result<Vec<EventFd>, _> = (0..NUM_QUEUES).map(|_| EventFd::new(libc::EFD_NONBLOCK)).collect();
        let calls = calls.map_err(|source| ActivateError::Io { what: "fs call eventfd", source })?;
        let with_protocol = match (&self.rings, rings_only) {
            (Some(r), true) => {
                let w = r.with_protocol;
                self.setup_rings(&ctx, &calls, w)?;
                w
            }
            _ => self.setup(&ctx, &calls)?,
        };
        let queue_events: Result<Vec<EventFd>, _> = ctx.queue_events.iter().map(EventFd::try_clone).collect();
        self.rings = Some(Rings {
            mem: ctx.mem.clone(),
            queues: ctx.queues.iter().map(|q| q.state()).collect(),
            queue_events: queue_events.map_err(|source| ActivateError::Io { what: "fs kick eventfd", source })?,
            interrupt: ctx.interrupt.clone(),
            acked_features: ctx.acked_features,
            with_protocol,
        });
        let (stop, theirs) = stop_pair()?;
        let fwd = CallForwarder { calls, interrupt: ctx.interrupt, stop: theirs, stopped: false };
        self.worker = Some(spawn("virtio-fs", fwd, stop)?);
        Ok(())
    }
}

/// The used ring's index as the backend left it in guest memory.
fn used_index(mem: &vm_memory::GuestMemoryMmap, q: &virtio_queue::QueueState) -> Option<u16> {
    use vm_memory::Bytes;
    mem.read_obj::<u16>(GuestAddress(q.used_ring.checked_add(2)?)).ok()
}

/// A context to restart `rings` from `states` (a refused snapshot lets them run on).
fn context(rings: &Rings, states: &[virtio_queue::QueueState]) -> Result<ActivateContext, DeviceSnapshotError> {
    ActivateContext::from_states(&rings.mem, states, &rings.queue_events, &rings.interrupt, rings.acked_features)
}

/// Forwards virtiofsd's per-queue calls as guest interrupts.
pub struct CallForwarder {
    calls: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    stop: EventFd,
    stopped: bool,
}

impl MutEventSubscriber for CallForwarder {
    fn init(&mut self, ops: &mut EventOps) {
        for (i, c) in self.calls.iter().enumerate() {
            if let Err(e) = ops.add(Events::with_data(c, i as u32, EventSet::IN)) {
                log::warn!("fs: cannot watch call {i}: {e:?}");
            }
        }
        if let Err(e) = ops.add(Events::with_data(&self.stop, STOP, EventSet::IN)) {
            log::warn!("fs: cannot watch stop event: {e:?}");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match events.data() {
            STOP => {
                let _ = self.stop.read();
                self.stopped = true;
            }
            i => {
                if let Some(c) = self.calls.get(i as usize) {
                    let _ = c.read();
                    if let Err(e) = self.interrupt.trigger(INT_VRING) {
                        log::warn!("fs: cannot raise interrupt: {e}");
                    }
                }
            }
        }
    }
}

impl Worker for CallForwarder {
    fn stopped(&self) -> bool {
        self.stopped
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        FS_DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        // The vhost-user protocol bit is between us and virtiofsd, not for the guest.
        self.backend_features & !VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        log::debug!("fs: guest wrote read-only config at {offset:#x}");
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        self.start(ctx, false)
    }

    fn supports_snapshot(&self) -> bool {
        true
    }

    /// Stops virtiofsd's rings (GET_VRING_BASE) and reports where they stand. Only a
    /// device the guest has not used yet: once it has mounted the share, FUSE state
    /// (the session, the inodes it was given) lives in this virtiofsd and no other
    /// could take it over, so the snapshot is refused and the rings run on.
    fn quiesce(&mut self) -> Result<Option<Vec<virtio_queue::QueueState>>, DeviceSnapshotError> {
        let Some(rings) = self.rings.take() else { return Ok(None) };
        if let Some(w) = self.worker.take() {
            let _ = w.stop();
        }
        let mut states = Vec::with_capacity(rings.queues.len());
        for (i, q) in rings.queues.iter().enumerate() {
            let base = self
                .frontend
                .get_vring_base(i)
                .map_err(|source| DeviceSnapshotError::VringBase { index: i, source })?;
            let used = used_index(&rings.mem, q).unwrap_or(base as u16);
            states.push(virtio_queue::QueueState { next_avail: base as u16, next_used: used, ..*q });
        }
        let used = states.iter().zip(&rings.queues).any(|(now, then)| now.next_avail != then.next_avail);
        if used {
            let ctx = context(&rings, &states)?;
            self.rings = Some(rings);
            self.start(ctx, true).map_err(DeviceSnapshotError::Start)?;
            return Err(DeviceSnapshotError::FsInUse);
        }
        self.rings = Some(Rings { queues: states.clone(), ..rings });
        Ok(Some(states))
    }

    /// After a snapshot the same virtiofsd takes its rings back; after a restore a new
    /// one gets the memory table and the rings at the snapshot's positions.
    fn resume(&mut self, ctx: ActivateContext, restored: bool) -> Result<(), ActivateError> {
        self.start(ctx, !restored)
    }

    fn reset(&mut self) {
        self.rings = None;
        if let Some(w) = self.worker.take() {
            let _ = w.stop();
        }
        // virtiofsd drops the queues when the frontend resets the owner.
        let _ = self.frontend.reset_owner();
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.stop();
        }
    }
}
