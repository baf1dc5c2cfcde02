//! The task engine's events as containerd's task events, published in the order they happen. A single forwarding
//! thread keeps that order and keeps a slow containerd off the request path.

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;
use std::time::SystemTime;

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused, TaskResumed,
    TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::topics;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
pub use isola_task::event::{Event, EventSink};

/// containerd's topic for `e`.
pub fn topic(e: &Event) -> &'static str {
    match e {
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

/// The protobuf message containerd decodes for `e`'s topic.
pub fn message(e: Event) -> Box<dyn MessageDyn> {
    match e {
        Event::Create { id, bundle, stdin, stdout, stderr, terminal, pid } => Box::new(TaskCreate {
            container_id: id,
            bundle,
            io: Some(TaskIO { stdin, stdout, stderr, terminal, ..Default::default() }).into(),
            pid,
            ..Default::default()
        }),
        Event::Start { id, pid } => Box::new(TaskStart { container_id: id, pid, ..Default::default() }),
        Event::ExecAdded { id, exec_id } => Box::new(TaskExecAdded { container_id: id, exec_id, ..Default::default() }),
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
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        }),
        Event::Paused { id } => Box::new(TaskPaused { container_id: id, ..Default::default() }),
        Event::Resumed { id } => Box::new(TaskResumed { container_id: id, ..Default::default() }),
        Event::Delete { id, pid, status, at } => Box::new(TaskDelete {
            id: id.clone(),
            container_id: id,
            pid,
            exit_status: status,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        }),
    }
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
                r.publish(Context::default(), topic(e), &namespace, message(e.clone())).map_err(|e| e.to_string())
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
                log::warn!("publishing {}: {err}; giving up on this event", topic(&e));
                break;
            }
            log::debug!("publishing {}: {err}; reconnecting", topic(&e));
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

/// A time as containerd's messages carry it (zero if it is before 1970).
pub fn timestamp(at: SystemTime) -> Timestamp {
    let d = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut t = Timestamp::new();
    t.seconds = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    t.nanos = i32::try_from(d.subsec_nanos()).unwrap_or(0);
    t
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
        let at = SystemTime::now();
        let m = message(Event::Exit { id: "c1".into(), exec_id: None, pid: 7, status: 42, at });
        let bytes = m.write_to_bytes_dyn().expect("encode");
        let e = TaskExit::parse_from_bytes(&bytes).expect("decode");
        assert_eq!((e.container_id.as_str(), e.id.as_str(), e.pid, e.exit_status), ("c1", "c1", 7, 42));
        let m = message(Event::Exit { id: "c1".into(), exec_id: Some("x1".into()), pid: 9, status: 0, at });
        let e = TaskExit::parse_from_bytes(&m.write_to_bytes_dyn().expect("encode")).expect("decode");
        assert_eq!((e.container_id.as_str(), e.id.as_str()), ("c1", "x1"));
        assert_eq!(topic(&Event::Oom { id: "c".into() }), "/tasks/oom");
    }

    #[test]
    fn every_event_goes_out_under_containerds_topic_for_its_name() {
        let at = SystemTime::now();
        let (id, x) = (String::from("c"), String::from("x"));
        let all = [
            Event::Create {
                id: id.clone(),
                bundle: "/b".into(),
                stdin: String::new(),
                stdout: String::new(),
                stderr: String::new(),
                terminal: false,
                pid: 1,
            },
            Event::Start { id: id.clone(), pid: 1 },
            Event::ExecAdded { id: id.clone(), exec_id: x.clone() },
            Event::ExecStarted { id: id.clone(), exec_id: x.clone(), pid: 2 },
            Event::Oom { id: id.clone() },
            Event::Exit { id: id.clone(), exec_id: None, pid: 1, status: 0, at },
            Event::Paused { id: id.clone() },
            Event::Resumed { id: id.clone() },
            Event::Delete { id, pid: 1, status: 0, at },
        ];
        for e in all {
            assert_eq!(topic(&e), format!("/tasks/{}", e.name()), "{e:?}");
        }
    }

    #[test]
    fn exit_times_reach_containerd_to_the_nanosecond() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_796_550_000, 123_456_789);
        let t = timestamp(at);
        assert_eq!((t.seconds, t.nanos), (1_796_550_000, 123_456_789));
        assert_eq!(timestamp(std::time::UNIX_EPOCH - std::time::Duration::from_secs(1)).seconds, 0);
    }
}
