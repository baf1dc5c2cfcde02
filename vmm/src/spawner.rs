//! Device worker threads are started by one spawner thread, not by the vCPU thread
//! whose register write activated the device: a thread inherits its creator's seccomp
//! filters, and a worker must not carry the vCPU's (nor a vCPU need clone).

use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();

/// Starts the spawner (once, before confinement, so it holds only the process-wide
/// filter). Threads started after this go through it.
pub fn start() -> std::io::Result<()> {
    if SPAWNER.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = channel::<Job>();
    std::thread::Builder::new().name("spawner".into()).spawn(move || {
        for job in rx {
            job();
        }
    })?;
    let _ = SPAWNER.set(Mutex::new(tx));
    Ok(())
}

/// Starts `f` on a new thread named `name`: by the spawner when it runs, else here.
pub fn spawn<F, T>(name: &str, f: F) -> std::io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let builder = std::thread::Builder::new().name(name.into());
    let Some(tx) = SPAWNER.get() else { return builder.spawn(f) };
    let (reply, result) = channel();
    let job: Job = Box::new(move || {
        let _ = reply.send(builder.spawn(f));
    });
    let sent = tx.lock().map_err(|_| std::io::Error::other("spawner lock poisoned"))?.send(job);
    sent.map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    result.recv().map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

#[cfg(test)]
mod tests {
    #[test]
    fn threads_start_through_the_spawner_and_return_their_result() {
        super::start().expect("spawner");
        let h = super::spawn("t", || std::thread::current().name().map(str::to_string)).expect("spawn");
        assert_eq!(h.join().expect("join").as_deref(), Some("t"));
    }
}
