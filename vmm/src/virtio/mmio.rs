//! The virtio-mmio register interface (virtio 1.2 §4.2.2) in front of a [`VirtioDevice`].

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::snapshot::{DeviceSnapshotError, QueueSnapshot, TransportSnapshot};
use super::{status, ActivateContext, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::devices::BusDevice;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x5153_4f49; // "IOSQ"
/// Offset of QueueNotify, for registering ioeventfds.
pub const NOTIFY_REG_OFFSET: u64 = 0x50;
const CONFIG_SPACE: u64 = 0x100;

pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    queue_events: Vec<EventFd>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    acked_features: u64,
    status: u32,
    config_generation: u32,
    active: bool,
    /// The device's queues while it is quiesced for a snapshot.
    quiesced: Option<Vec<virtio_queue::QueueState>>,
}

impl MmioTransport {
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        interrupt: Arc<Interrupt>,
    ) -> std::io::Result<Self> {
        let mut queues = Vec::new();
        let mut queue_events = Vec::new();
        for &max in device.queue_max_sizes() {
            queues.push(Queue::new(max).map_err(|e| std::io::Error::other(format!("queue of {max}: {e:?}")))?);
            queue_events.push(EventFd::new(libc::EFD_NONBLOCK)?);
        }
        Ok(Self {
            device,
            mem,
            interrupt,
            queues,
            queue_events,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            acked_features: 0,
            status: 0,
            config_generation: 0,
            active: false,
            quiesced: None,
        })
    }

    /// The per-queue notify eventfds, for KVM ioeventfd registration (datamatch = index).
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    pub fn status(&self) -> u32 {
        self.status
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        // Queue configuration is frozen once the device runs (and after FAILED).
        if self.active {
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        // FEATURES_OK only sticks if the driver accepted nothing we did not offer.
        let mut value = value;
        if value & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            let unknown = self.acked_features & !self.offered_features();
            if unknown != 0 || self.acked_features & VIRTIO_F_VERSION_1 == 0 {
                log::warn!("virtio: driver acked unsupported features {unknown:#x}");
                value &= !status::FEATURES_OK;
            }
        }
        self.status = value;
        if value & status::DRIVER_OK != 0 && value & status::FEATURES_OK != 0 && !self.active {
            self.activate();
        }
    }

    fn activate(&mut self) {
        let in_use = self.device.queues_in_use(self.acked_features);
        if let Some(bad) = self.queues.iter().take(in_use).position(|q| !q.ready() || !q.is_valid(&self.mem)) {
            log::warn!("virtio: refusing to start: queue {bad} is not ready or invalid");
            self.fail();
            return;
        }
        let states: Vec<_> = self.queues.iter().map(|q| q.state()).collect();
        match self.context(&states).and_then(|ctx| self.device.activate(ctx).map_err(DeviceSnapshotError::Start)) {
            Ok(()) => self.active = true,
            Err(e) => {
                log::warn!("virtio: device {} failed to start: {e}", self.device.device_type());
                self.fail();
            }
        }
    }

    /// What a device starts from: its own copies of `queues` (ours keep answering
    /// register reads) and of the notify eventfds.
    fn context(&self, queues: &[virtio_queue::QueueState]) -> Result<ActivateContext, DeviceSnapshotError> {
        ActivateContext::from_states(&self.mem, queues, &self.queue_events, &self.interrupt, self.acked_features)
    }

    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    pub fn supports_snapshot(&self) -> bool {
        self.device.supports_snapshot()
    }

    /// Stops the device (if it runs) and returns the transport's state with the
    /// device's queue positions; [`MmioTransport::resume_after_snapshot`] undoes it.
    pub fn snapshot(&mut self) -> Result<TransportSnapshot, DeviceSnapshotError> {
        let queues = match (self.active, &self.quiesced) {
            (true, Some(q)) => q.clone(),
            (true, None) => {
                let q = self.device.quiesce()?.ok_or(DeviceSnapshotError::NoQueues)?;
                self.quiesced = Some(q.clone());
                q
            }
            (false, _) => self.queues.iter().map(|q| q.state()).collect(),
        };
        Ok(TransportSnapshot {
            device_type: self.device.device_type(),
            queue_sel: self.queue_sel,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            acked_features: self.acked_features,
            status: self.status,
            config_generation: self.config_generation,
            active: self.active,
            interrupt_status: self.interrupt.status(),
            queues: queues.into_iter().map(QueueSnapshot::from).collect(),
        })
    }

    /// Runs the device again from where [`MmioTransport::snapshot`] stopped it.
    pub fn resume_after_snapshot(&mut self) -> Result<(), DeviceSnapshotError> {
        let Some(q) = self.quiesced.take() else { return Ok(()) };
        let ctx = self.context(&q)?;
        self.device.resume(ctx, false).map_err(DeviceSnapshotError::Start)
    }

    /// Puts back the registers and queues of a snapshot (the device is started by
    /// [`MmioTransport::start_restored`], once the VMM is confined). Queues from the
    /// file are checked as any driver's would be.
    pub fn restore(&mut self, s: &TransportSnapshot) -> Result<(), DeviceSnapshotError> {
        if s.device_type != self.device.device_type() || s.queues.len() != self.queues.len() {
            return Err(DeviceSnapshotError::Mismatch {
                snap: super::device_name(s.device_type),
                snap_queues: s.queues.len(),
                mine: super::device_name(self.device.device_type()),
                my_queues: self.queues.len(),
            });
        }
        let mut queues = Vec::with_capacity(s.queues.len());
        for (i, (q, mine)) in s.queues.iter().zip(&self.queues).enumerate() {
            let state = virtio_queue::QueueState::from(q);
            if state.max_size != mine.max_size() {
                return Err(DeviceSnapshotError::QueueSize { index: i, snap: state.max_size, mine: mine.max_size() });
            }
            let queue = Queue::try_from(state).map_err(|source| DeviceSnapshotError::Queue { index: i, source })?;
            if s.active && !queue.is_valid(&self.mem) {
                return Err(DeviceSnapshotError::RingsOutside(i));
            }
            queues.push(queue);
        }
        self.queues = queues;
        self.queue_sel = s.queue_sel;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.acked_features = s.acked_features;
        self.status = s.status;
        self.config_generation = s.config_generation;
        self.interrupt.restore(s.interrupt_status).map_err(DeviceSnapshotError::Interrupt)?;
        if s.active {
            self.quiesced = Some(s.queues.iter().map(virtio_queue::QueueState::from).collect());
        }
        Ok(())
    }

    /// Starts a restored device (it hears that it was restored: vsock resets its
    /// connections in the guest).
    pub fn start_restored(&mut self) -> Result<(), DeviceSnapshotError> {
        let Some(q) = self.quiesced.take() else { return Ok(()) };
        let ctx = self.context(&q)?;
        self.device.resume(ctx, true).map_err(DeviceSnapshotError::Start)?;
        self.active = true;
        if self.device.config_changes_on_restore() {
            self.config_generation = self.config_generation.wrapping_add(1);
            self.interrupt.trigger(super::INT_CONFIG).map_err(DeviceSnapshotError::Interrupt)?;
        }
        Ok(())
    }

    /// DEVICE_NEEDS_RESET and a config interrupt: the driver must reset us.
    fn fail(&mut self) {
        self.status |= status::DEVICE_NEEDS_RESET;
        let _ = self.interrupt.trigger(super::INT_CONFIG);
    }

    fn reset(&mut self) {
        if self.active {
            self.device.reset();
        }
        self.active = false;
        self.status = 0;
        self.acked_features = 0;
        self.queue_sel = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.interrupt.ack(u32::MAX);
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let q = self.queues.get(self.queue_sel as usize);
        match offset {
            0x00 => MAGIC,
            0x04 => VERSION,
            0x08 => self.device.device_type(),
            0x0c => VENDOR_ID,
            0x10 => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            0x34 => q.map_or(0, |q| u32::from(q.max_size())),
            0x44 => q.map_or(0, |q| u32::from(q.ready())),
            0x60 => self.interrupt.status(),
            0x70 => self.status,
            0xfc => self.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            0x14 => self.device_features_sel = v,
            0x20 if !self.active => match self.driver_features_sel {
                0 => self.acked_features = (self.acked_features & !0xffff_ffff) | u64::from(v),
                1 => self.acked_features = (self.acked_features & 0xffff_ffff) | (u64::from(v) << 32),
                _ => {}
            },
            0x24 => self.driver_features_sel = v,
            0x30 => self.queue_sel = v,
            0x38 => {
                if let Some(q) = self.selected_queue() {
                    q.set_size(v as u16);
                }
            }
            0x44 => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(v == 1);
                }
            }
            NOTIFY_REG_OFFSET => {
                // Reached only when no ioeventfd is registered for this queue.
                if let Some(e) = self.queue_events.get(v as usize) {
                    let _ = e.write(1);
                }
            }
            0x64 => self.interrupt.ack(v),
            0x70 => self.set_status(v),
            0x80 | 0x84 | 0x90 | 0x94 | 0xa0 | 0xa4 => {
                let (lo, hi) = if offset.is_multiple_of(8) { (Some(v), None) } else { (None, Some(v)) };
                if let Some(q) = self.selected_queue() {
                    match offset & !0x7 {
                        0x80 => q.set_desc_table_address(lo, hi),
                        0x90 => q.set_avail_ring_address(lo, hi),
                        _ => q.set_used_ring_address(lo, hi),
                    }
                }
            }
            _ => log::debug!("virtio-mmio: ignored write {v:#x} to {offset:#x}"),
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_SPACE {
            self.device.read_config(offset - CONFIG_SPACE, data);
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_SPACE {
            self.device.write_config(offset - CONFIG_SPACE, data);
            self.config_generation = self.config_generation.wrapping_add(1);
            return;
        }
        // Registers are 32-bit; anything else is a driver bug we do not act on.
        if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            self.write_reg(offset, u32::from_le_bytes(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use vm_memory::GuestAddress;

    #[derive(Default)]
    struct Seen {
        activated: Option<(usize, u64)>,
        resets: usize,
    }

    struct Dummy {
        seen: Arc<Mutex<Seen>>,
        config: [u8; 8],
        fail: bool,
    }

    impl VirtioDevice for Dummy {
        fn device_type(&self) -> u32 {
            19
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 16]
        }
        fn features(&self) -> u64 {
            1 << 3
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            super::super::read_config_bytes(&self.config, offset, data);
        }
        fn write_config(&mut self, _: u64, _: &[u8]) {}
        fn activate(&mut self, ctx: ActivateContext) -> Result<(), super::super::ActivateError> {
            if self.fail {
                return Err(super::super::ActivateError::AlreadyActive("test device"));
            }
            self.seen.lock().expect("lock").activated = Some((ctx.queues.len(), ctx.acked_features));
            Ok(())
        }
        fn reset(&mut self) {
            self.seen.lock().expect("lock").resets += 1;
        }
    }

    fn transport(fail: bool) -> (MmioTransport, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let dev = Dummy { seen: seen.clone(), config: [1, 2, 3, 4, 5, 6, 7, 8], fail };
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("mem");
        let irq = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")));
        (MmioTransport::new(Box::new(dev), mem, irq).expect("transport"), seen)
    }

    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    /// Plays a driver: negotiate, set up both queues at distinct addresses, go.
    fn bring_up(t: &mut MmioTransport, driver_features_hi: u32) {
        w(t, 0x70, status::ACKNOWLEDGE | status::DRIVER);
        w(t, 0x24, 0);
        w(t, 0x20, 1 << 3);
        w(t, 0x24, 1);
        w(t, 0x20, driver_features_hi);
        w(t, 0x70, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        for q in 0..2u32 {
            w(t, 0x30, q);
            w(t, 0x38, 16);
            let base = 0x1_0000 + q * 0x1000;
            w(t, 0x80, base);
            w(t, 0x84, 0);
            w(t, 0x90, base + 0x400);
            w(t, 0xa0, base + 0x800);
            w(t, 0x44, 1);
        }
        let s = r(t, 0x70);
        w(t, 0x70, s | status::DRIVER_OK);
    }

    #[test]
    fn identification_registers() {
        let (mut t, _) = transport(false);
        assert_eq!(r(&mut t, 0x00), MAGIC);
        assert_eq!(r(&mut t, 0x04), 2);
        assert_eq!(r(&mut t, 0x08), 19);
        w(&mut t, 0x14, 0);
        assert_eq!(r(&mut t, 0x10), 1 << 3);
        w(&mut t, 0x14, 1);
        assert_eq!(r(&mut t, 0x10), 1, "VERSION_1 in the high word");
        w(&mut t, 0x30, 1);
        assert_eq!(r(&mut t, 0x34), 16);
        w(&mut t, 0x30, 7);
        assert_eq!(r(&mut t, 0x34), 0, "no such queue");
    }

    #[test]
    fn driver_ok_activates_with_queues_and_features() {
        let (mut t, seen) = transport(false);
        bring_up(&mut t, 1);
        assert!(t.is_active());
        assert_eq!(seen.lock().expect("lock").activated, Some((2, VIRTIO_F_VERSION_1 | 1 << 3)));
    }

    #[test]
    fn features_without_version_1_are_refused() {
        let (mut t, seen) = transport(false);
        bring_up(&mut t, 0);
        assert_eq!(r(&mut t, 0x70) & status::FEATURES_OK, 0);
        assert!(!t.is_active());
        assert!(seen.lock().expect("lock").activated.is_none());
    }

    #[test]
    fn a_failing_backend_sets_needs_reset_and_reset_recovers() {
        let (mut t, _) = transport(true);
        bring_up(&mut t, 1);
        assert!(!t.is_active());
        assert_ne!(r(&mut t, 0x70) & status::DEVICE_NEEDS_RESET, 0);
        assert_ne!(r(&mut t, 0x60) & super::super::INT_CONFIG, 0);
        w(&mut t, 0x70, 0);
        assert_eq!(r(&mut t, 0x70), 0);
        assert_eq!(r(&mut t, 0x60), 0);
    }

    #[test]
    fn reset_stops_an_active_device_and_unreadies_queues() {
        let (mut t, seen) = transport(false);
        bring_up(&mut t, 1);
        w(&mut t, 0x70, 0);
        assert_eq!(seen.lock().expect("lock").resets, 1);
        w(&mut t, 0x30, 0);
        assert_eq!(r(&mut t, 0x44), 0);
    }

    #[test]
    fn queue_config_is_frozen_while_active() {
        let (mut t, _) = transport(false);
        bring_up(&mut t, 1);
        w(&mut t, 0x30, 0);
        w(&mut t, 0x44, 0);
        assert_eq!(r(&mut t, 0x44), 1);
    }

    #[test]
    fn notify_without_ioeventfd_signals_the_queue_event() {
        let (mut t, _) = transport(false);
        w(&mut t, NOTIFY_REG_OFFSET, 1);
        assert_eq!(t.queue_events()[1].read().expect("notified"), 1);
        w(&mut t, NOTIFY_REG_OFFSET, 9);
    }

    #[test]
    fn config_space_reads_and_odd_sized_accesses() {
        let (mut t, _) = transport(false);
        let mut b = [0u8; 4];
        t.read(0x104, &mut b);
        assert_eq!(b, [5, 6, 7, 8]);
        let mut past = [9u8; 4];
        t.read(0x106, &mut past);
        assert_eq!(past, [7, 8, 0, 0]);
        let mut one = [9u8; 1];
        t.read(0x00, &mut one);
        assert_eq!(one, [0]);
        t.write(0x70, &[1, 2]);
        assert_eq!(r(&mut t, 0x70), 0);
    }

    #[test]
    fn a_transport_snapshot_restores_its_registers_and_refuses_a_mismatch() {
        let (mut t, _) = transport(false);
        w(&mut t, 0x70, status::ACKNOWLEDGE | status::DRIVER);
        w(&mut t, 0x30, 1);
        w(&mut t, 0x38, 8);
        w(&mut t, 0x80, 0x2_0000);
        w(&mut t, 0x44, 1);
        let snap = t.snapshot().expect("an idle transport snapshots");
        assert!(!snap.active);
        let (mut back, _) = transport(false);
        back.restore(&snap).expect("restore");
        for reg in [0x70, 0x44, 0x34] {
            assert_eq!(r(&mut back, reg), r(&mut t, reg), "register {reg:#x}");
        }
        assert_eq!(back.snapshot().expect("again"), snap);
        // Another device type, another queue count, or rings outside memory: refused.
        let mut wrong = snap.clone();
        wrong.device_type = 1;
        assert!(back.restore(&wrong).expect_err("type").to_string().contains("net device"));
        let mut wrong = snap.clone();
        wrong.queues.pop();
        assert!(back.restore(&wrong).is_err());
        let mut wrong = snap.clone();
        wrong.active = true;
        wrong.queues[0].ready = true;
        wrong.queues[0].size = 16;
        wrong.queues[0].desc_table = 1 << 40;
        assert!(back.restore(&wrong).expect_err("rings").to_string().contains("do not fit"), "rings outside memory");
        // A running device that cannot be quiesced says so instead of a wrong state.
        let (mut running, _) = transport(false);
        bring_up(&mut running, 1);
        assert!(running.is_active());
        assert!(matches!(
            running.snapshot().expect_err("dummy has no quiesce"),
            DeviceSnapshotError::Unsupported("vsock")
        ));
    }
}
