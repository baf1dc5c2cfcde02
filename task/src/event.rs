//! What the task engine reports as it happens: one event per task or process change,
//! in the order they happen. Where they go is the caller's ([`EventSink`]).

use std::time::SystemTime;

/// Every event the task engine reports, with what it carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Create { id: String, bundle: String, stdin: String, stdout: String, stderr: String, terminal: bool, pid: u32 },
    Start { id: String, pid: u32 },
    ExecAdded { id: String, exec_id: String },
    ExecStarted { id: String, exec_id: String, pid: u32 },
    Oom { id: String },
    Exit { id: String, exec_id: Option<String>, pid: u32, status: u32, at: SystemTime },
    Paused { id: String },
    Resumed { id: String },
    Delete { id: String, pid: u32, status: u32, at: SystemTime },
}

impl Event {
    /// A short name, for logs and tests.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Create { .. } => "create",
            Event::Start { .. } => "start",
            Event::ExecAdded { .. } => "exec-added",
            Event::ExecStarted { .. } => "exec-started",
            Event::Oom { .. } => "oom",
            Event::Exit { .. } => "exit",
            Event::Paused { .. } => "paused",
            Event::Resumed { .. } => "resumed",
            Event::Delete { .. } => "delete",
        }
    }
}

/// Where events go: containerd (the shim's publisher), isola-runtime's keeper, or a recorder in tests.
pub trait EventSink: Send + Sync {
    fn send(&self, e: Event);
}

#[cfg(test)]
pub mod testing {
    use super::*;
    use std::sync::Mutex;

    /// Keeps every event, for ordering assertions.
    #[derive(Default)]
    pub struct Recorder(pub Mutex<Vec<Event>>);

    impl EventSink for Recorder {
        fn send(&self, e: Event) {
            self.0.lock().expect("recorder").push(e);
        }
    }

    impl Recorder {
        /// Names in order, with the exec id for exec events: compact to assert on.
        pub fn topics(&self) -> Vec<String> {
            self.0
                .lock()
                .expect("recorder")
                .iter()
                .map(|e| match e {
                    Event::ExecAdded { exec_id, .. } | Event::ExecStarted { exec_id, .. } => {
                        format!("{}:{exec_id}", e.name())
                    }
                    Event::Exit { exec_id: Some(x), .. } => format!("{}:{x}", e.name()),
                    _ => e.name().to_string(),
                })
                .collect()
        }
    }
}
