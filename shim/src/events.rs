//! Task events for containerd, published in the order they happen. A single forwarding
//! thread keeps that order and keeps a slow containerd off the request path.

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused, TaskResumed,
    TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::topics;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

/// Every event the shim sends, with what it carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Create { id: String, bundle: String, stdin: String, stdout: String, stderr: String, terminal: bool, pid: u32 },
    Start { id: String, pid: u32 },
    ExecAdded { id: String, exec_id: String },
    ExecStarted { id: String, exec_id: String, pid: u32 },
    Oom { id: String },
    Exit { id: String, exec_id: Option<String>, pid: u32, status: u32, at: Timestamp },
    Paused { id: String },
    Resumed { id: String },
    Delete { id: String, pid: u32, status: u32, at: Timestamp },
}

impl Event {
    pub fn topic(&self) -> &'static str {
        match self {
            Event::Create { .. } => topics::TASK_CREATE_EVENT_TOPIC,
            Event::Start { .. } => topics::TASK_START_EVENT_TOPIC,
            Event::ExecAdded { .. } => topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            Event::ExecStarted { .. } => topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            Event::Oom { .. } => topics::TASK_OOM_EVENT_TOPIC,
            Event::Exit { .. } => topics::TASK_EXIT_EVENT_TOPIC,
            Event::Paused { .. } => topics::TASK_PAUSED_EVENT_TOPIC,
            Event::Resumed { .. } => topics::TASK_RESUMED_EVENT_TOPIC,
            Event::Delete { .. } => topics::TASK_DELETE_EVENT_TOPIC,
        }
    }

    /// The protobuf message containerd decodes for this topic.
    pub fn message(self) -> Box<dyn MessageDyn> {
        match self {
            Event::Create { id, bundle, stdin, stdout, stderr, terminal, pid } => Box::new(TaskCreate {
                container_id: id,
                bundle,
                io: Some(TaskIO { stdin, stdout, stderr, terminal, ..Default::default() }).into(),
                pid,
                ..Default::default()
            }),
            Event::Start { id, pid } => Box::new(TaskStart { container_id: id, pid, ..Default::default() }),
            Event::ExecAdded { id, exec_id } => {
                Box::new(TaskExecAdded { container_id: id, exec_id, ..Default::default() })
            }
            Event::ExecStarted { id, exec_id, pid } => {
                Box::new(TaskExecStarted { container_id: id, exec_id, pid, ..Default::default() })
            }
            Event::Oom { id } => Box::new(TaskOOM { container_id: id, ..Default::default() }),
            Event::Exit { id, exec_id, pid, status, at } => Box::new(TaskExit {
                // For the init process, containerd wants the container id in both fields.
                id: exec_id.unwrap_or_else(|| id.clone()),
                container_id: id,
                pid,
                exit_status: status,
                exited_at: Some(at).into(),
                ..Default::default()
            }),
            Event::Paused { id } => Box::new(TaskPaused { container_id: id, ..Default::default() }),
            Event::Resumed { id } => Box::new(TaskResumed { container_id: id, ..Default::default() }),
            Event::Delete { id, pid, status, at } => Box::new(TaskDelete {
                id: id.clone(),
                container_id: id,
                pid,
                exit_status: status,
                exited_at: Some(at).into(),
                ..Default::default()
            }),
        }
    }
}

/// Where events go: containerd, or a recorder in tests.
pub trait EventSink: Send + Sync {
    fn send(&self, e: Event);
}

/// Forwards to containerd's event service from one thread, in order.
pub struct Publisher {
    tx: Mutex<Sender<Event>>,
}

/// How often, and how far apart, a failed publish reconnects and retries: long enough
/// for containerd to restart (its socket keeps its path).
const RETRIES: usize = 60;
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

impl Publisher {
    /// `address` is containerd's ttrpc socket, to reconnect to after it restarted.
    pub fn new(remote: RemotePublisher, namespace: String, address: String) -> Self {
        let (tx, rx) = channel::<Event>();
        std::thread::spawn(move || {
            let publish = |r: &RemotePublisher, e: &Event| {
                r.publish(Context::default(), e.topic(), &namespace, e.clone().message()).map_err(|e| e.to_string())
            };
            let connect = || RemotePublisher::new(&address).map_err(|e| e.to_string());
            forward(rx.into_iter(), remote, publish, connect, RETRY_PAUSE);
        });
        Publisher { tx: Mutex::new(tx) }
    }
}

/// Sends each event in order; after a failure, reconnects and retries the same event
/// (up to [`RETRIES`] times), so a containerd restart loses no exit.
fn forward<R>(
    events: impl Iterator<Item = Event>,
    mut remote: R,
    publish: impl Fn(&R, &Event) -> Result<(), String>,
    connect: impl Fn() -> Result<R, String>,
    pause: std::time::Duration,
) {
    for e in events {
        let mut tries = 0;
        while let Err(err) = publish(&remote, &e) {
            tries += 1;
            if tries > RETRIES {
                log::warn!("publishing {}: {err}; giving up on this event", e.topic());
                break;
            }
            log::debug!("publishing {}: {err}; reconnecting", e.topic());
            std::thread::sleep(pause);
            match connect() {
                Ok(r) => remote = r,
                Err(c) => log::debug!("reconnecting to containerd: {c}"),
            }
        }
    }
}

impl EventSink for Publisher {
    fn send(&self, e: Event) {
        match self.tx.lock() {
            Ok(tx) => {
                if tx.send(e).is_err() {
                    log::warn!("event forwarder is gone");
                }
            }
            Err(_) => log::warn!("event channel lock poisoned"),
        }
    }
}

/// Now, as containerd's events carry it (the shim crate's clock; zero if it is before 1970).
pub fn now() -> Timestamp {
    containerd_shim::util::timestamp().unwrap_or_default()
}

#[cfg(test)]
pub mod testing {
    use super::*;

    /// Keeps every event, for ordering assertions.
    #[derive(Default)]
    pub struct Recorder(pub Mutex<Vec<Event>>);

    impl EventSink for Recorder {
        fn send(&self, e: Event) {
            self.0.lock().expect("recorder").push(e);
        }
    }

    impl Recorder {
        /// Topics in order, with the exec id for exec events: compact to assert on.
        pub fn topics(&self) -> Vec<String> {
            self.0
                .lock()
                .expect("recorder")
                .iter()
                .map(|e| match e {
                    Event::ExecAdded { exec_id, .. } | Event::ExecStarted { exec_id, .. } => {
                        format!("{}:{exec_id}", e.topic())
                    }
                    Event::Exit { exec_id: Some(x), .. } => format!("{}:{x}", e.topic()),
                    _ => e.topic().to_string(),
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::Message;

    #[test]
    fn a_restarted_containerd_gets_every_event_in_order_after_a_reconnect() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Connection n (0 = the first) is broken while n < 2: its publishes fail.
        let generation = AtomicUsize::new(0);
        let got = Mutex::new(Vec::new());
        let events = (0..5u32).map(|pid| Event::Start { id: "c".into(), pid });
        forward(
            events,
            0usize,
            |conn: &usize, e: &Event| {
                // containerd "restarts" after the second event: the old connection breaks.
                if *conn < 1 && got.lock().expect("got").len() >= 2 {
                    return Err("EPIPE".into());
                }
                got.lock().expect("got").push(e.clone());
                Ok(())
            },
            || Ok(generation.fetch_add(1, Ordering::SeqCst) + 1),
            std::time::Duration::ZERO,
        );
        let pids: Vec<u32> = got
            .into_inner()
            .expect("got")
            .iter()
            .map(|e| if let Event::Start { pid, .. } = e { *pid } else { 99 })
            .collect();
        assert_eq!(pids, [0, 1, 2, 3, 4], "nothing lost, nothing reordered");
        assert_eq!(generation.load(Ordering::SeqCst), 1, "one reconnect");
        // A containerd that never comes back: each event is given up after the retries.
        let tries = AtomicUsize::new(0);
        forward(
            std::iter::once(Event::Oom { id: "c".into() }),
            (),
            |_: &(), _: &Event| {
                tries.fetch_add(1, Ordering::SeqCst);
                Err("gone".into())
            },
            || Err("refused".into()),
            std::time::Duration::ZERO,
        );
        assert_eq!(tries.load(Ordering::SeqCst), RETRIES + 1);
    }

    #[test]
    fn exit_of_init_names_the_container_twice_and_exec_exit_names_the_exec() {
        let at = now();
        let m = Event::Exit { id: "c1".into(), exec_id: None, pid: 7, status: 42, at: at.clone() }.message();
        let bytes = m.write_to_bytes_dyn().expect("encode");
        let e = TaskExit::parse_from_bytes(&bytes).expect("decode");
        assert_eq!((e.container_id.as_str(), e.id.as_str(), e.pid, e.exit_status), ("c1", "c1", 7, 42));
        let m = Event::Exit { id: "c1".into(), exec_id: Some("x1".into()), pid: 9, status: 0, at }.message();
        let e = TaskExit::parse_from_bytes(&m.write_to_bytes_dyn().expect("encode")).expect("decode");
        assert_eq!((e.container_id.as_str(), e.id.as_str()), ("c1", "x1"));
        assert_eq!(Event::Oom { id: "c".into() }.topic(), "/tasks/oom");
    }
}
