//! The vsock device model: config space (guest CID) and the handler thread's lifecycle.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use event_manager::{EventManager, SubscriberOps};
use vmm_sys_util::eventfd::EventFd;

use super::event_handler::VsockHandler;
use super::{Counters, VsockBackend, QUEUE_SIZE, VSOCK_DEVICE_ID};
use crate::virtio::{read_config_bytes, ActivateContext, ActivateError, VirtioDevice};

const QUEUE_SIZES: [u16; 3] = [QUEUE_SIZE; 3];

type Returned = (Box<dyn VsockBackend>, Counters);

pub struct Vsock {
    guest_cid: u64,
    backend: Option<Box<dyn VsockBackend>>,
    worker: Option<(EventFd, JoinHandle<Option<Returned>>)>,
    counters: Counters,
}

impl Vsock {
    pub fn new(guest_cid: u64, backend: Box<dyn VsockBackend>) -> Self {
        Self { guest_cid, backend: Some(backend), worker: None, counters: Counters::default() }
    }

    /// Counters as of the last reset.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    fn stop_worker(&mut self) {
        let Some((stop, handle)) = self.worker.take() else { return };
        let _ = stop.write(1);
        match handle.join() {
            Ok(Some((mut backend, counters))) => {
                backend.reset();
                self.counters = counters;
                self.backend = Some(backend);
            }
            _ => log::warn!("vsock: worker ended without returning its backend"),
        }
    }
}

fn run_worker(handler: VsockHandler) -> Option<Returned> {
    let mut em = match EventManager::<Arc<Mutex<VsockHandler>>>::new() {
        Ok(em) => em,
        Err(e) => {
            log::warn!("vsock: event manager: {e:?}");
            return Some((handler.backend, handler.counters));
        }
    };
    let handler = Arc::new(Mutex::new(handler));
    em.add_subscriber(handler.clone());
    loop {
        if let Err(e) = em.run() {
            log::warn!("vsock: event loop: {e:?}");
            break;
        }
        match handler.lock() {
            Ok(h) if h.stopped => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    drop(em);
    let h = Arc::try_unwrap(handler).ok()?.into_inner().ok()?;
    Some((h.backend, h.counters))
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VSOCK_DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        0
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.guest_cid.to_le_bytes(), offset, data);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        log::debug!("vsock: guest wrote read-only config at {offset:#x}");
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let backend = self.backend.take().ok_or_else(|| ActivateError::Backend("vsock already running".into()))?;
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| ActivateError::Backend(e.to_string()))?;
        let stop2 = stop.try_clone().map_err(|e| ActivateError::Backend(e.to_string()))?;
        let handler = VsockHandler {
            mem: ctx.mem,
            queues: ctx.queues,
            queue_events: ctx.queue_events,
            interrupt: ctx.interrupt,
            backend,
            guest_cid: self.guest_cid,
            stop: stop2,
            stopped: false,
            counters: self.counters,
        };
        let handle = std::thread::Builder::new()
            .name("vsock".into())
            .spawn(move || run_worker(handler))
            .map_err(|e| ActivateError::Backend(format!("spawn vsock thread: {e}")))?;
        self.worker = Some((stop, handle));
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        self.stop_worker();
    }
}
