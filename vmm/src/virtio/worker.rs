//! One event-manager thread per running device: it owns the device's handler while
//! the driver is live and hands it back when the device stops.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::eventfd::EventFd;

use super::ActivateError;

/// A device's event handler: it watches a stop eventfd and says when it has seen it.
pub trait Worker: MutEventSubscriber + Send + 'static {
    fn stopped(&self) -> bool;
}

pub struct WorkerHandle<H> {
    stop: EventFd,
    handle: JoinHandle<Option<H>>,
}

/// A stop eventfd pair: one for the handler to watch, one to signal it.
pub fn stop_pair() -> Result<(EventFd, EventFd), ActivateError> {
    let a = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| ActivateError::Io { what: "stop eventfd", source })?;
    let b = a.try_clone().map_err(|source| ActivateError::Io { what: "stop eventfd", source })?;
    Ok((a, b))
}

/// Runs `handler` on its own thread until it reports stopped; `stop` signals it.
pub fn spawn<H: Worker>(name: &str, handler: H, stop: EventFd) -> Result<WorkerHandle<H>, ActivateError> {
    let handle = crate::spawner::spawn(name, move || run(handler))
        .map_err(|source| ActivateError::Io { what: "spawn device thread", source })?;
    Ok(WorkerHandle { stop, handle })
}

fn run<H: Worker>(handler: H) -> Option<H> {
    if let Err(e) = crate::confine::enter_thread(crate::confine::ThreadKind::Worker) {
        log::error!("device thread: {e}");
        return Some(handler);
    }
    let mut em = match EventManager::<Arc<Mutex<H>>>::new() {
        Ok(em) => em,
        Err(e) => {
            log::warn!("event manager: {e:?}");
            return Some(handler);
        }
    };
    let handler = Arc::new(Mutex::new(handler));
    em.add_subscriber(handler.clone());
    loop {
        if let Err(e) = em.run() {
            log::warn!("event loop: {e:?}");
            break;
        }
        match handler.lock() {
            Ok(h) if h.stopped() => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    drop(em);
    Arc::try_unwrap(handler).ok()?.into_inner().ok()
}

impl<H> WorkerHandle<H> {
    /// Stops the thread and returns the handler (None if the thread died).
    pub fn stop(self) -> Option<H> {
        let _ = self.stop.write(1);
        self.handle.join().ok().flatten()
    }
}
