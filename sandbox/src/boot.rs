//! Boots a guest on a backend and times its milestones.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::backend::probe_command as command;
use crate::host::KvmKind;
use crate::hypervisor::{BootSpec, HypervisorError, HypervisorKind};

/// One milestone, in microseconds since the VMM process was spawned.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Phase {
    pub name: String,
    pub us: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BootReport {
    pub hypervisor: HypervisorKind,
    pub kvm: KvmKind,
    pub phases: Vec<Phase>,
    /// Measurements the VMM reported (isola-vmm: `rss_kib`, `guest_resident_kib`).
    pub values: std::collections::BTreeMap<String, u64>,
    /// Did the guest print the marker and the VMM exit cleanly?
    pub success: bool,
    pub exit_code: Option<i32>,
    /// Everything the guest wrote to its console.
    pub console: String,
    /// The VMM's own diagnostics (stderr), minus the event lines.
    pub diagnostics: String,
}

impl BootReport {
    pub fn phase(&self, name: &str) -> Option<Duration> {
        self.phases.iter().find(|p| p.name == name).map(|p| Duration::from_micros(p.us))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootFailure {
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    #[error("cannot start {0}: {1}")]
    Spawn(HypervisorKind, std::io::Error),
}

enum Line {
    Console(String, Instant),
    Diag(String),
}

fn pump<R: Read + Send + 'static>(r: R, tx: std::sync::mpsc::Sender<Line>, console: bool) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let msg = if console { Line::Console(line, Instant::now()) } else { Line::Diag(line) };
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
}

/// What an `isola-vmm: event=...` line carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// `event=<name> us=<n>`: a milestone.
    Phase(Phase),
    /// `event=<name> value=<n>`: a measurement.
    Value(String, u64),
}

/// Parses `isola-vmm: event=<name> us=<n>` and `isola-vmm: event=<name> value=<n>`.
pub fn parse_event(line: &str) -> Option<Event> {
    let rest = line.strip_prefix("isola-vmm: event=")?;
    if let Some((name, us)) = rest.split_once(" us=") {
        return Some(Event::Phase(Phase { name: name.to_string(), us: us.trim().parse().ok()? }));
    }
    let (name, v) = rest.split_once(" value=")?;
    Some(Event::Value(name.to_string(), v.trim().parse().ok()?))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Boots `spec` on `kind`, waiting for `marker` on the console. `echo` receives the
/// console as it arrives. The VMM is always reaped; on timeout it is killed first.
pub fn boot(
    kind: HypervisorKind,
    kvm: KvmKind,
    spec: &BootSpec,
    marker: &str,
    echo: Option<&mut dyn Write>,
) -> Result<BootReport, BootFailure> {
    boot_with(command(kind, spec, kvm)?, kind, kvm, spec, marker, echo)
}

/// [`boot`] with a command line of the caller's (another build of the VMM, extra flags).
pub fn boot_with(
    mut cmd: std::process::Command,
    kind: HypervisorKind,
    kvm: KvmKind,
    spec: &BootSpec,
    marker: &str,
    mut echo: Option<&mut dyn Write>,
) -> Result<BootReport, BootFailure> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let spawned = Instant::now();
    let mut child: Child = cmd.spawn().map_err(|e| BootFailure::Spawn(kind, e))?;
    let (tx, rx) = channel();
    if let Some(out) = child.stdout.take() {
        pump(out, tx.clone(), true);
    }
    if let Some(err) = child.stderr.take() {
        pump(err, tx, false);
    }
    // QEMU has no timeout of its own; ours covers both (isola-vmm also gets --timeout-ms).
    let deadline = spawned + spec.timeout + Duration::from_secs(2);
    let mut phases = Vec::new();
    let mut values = std::collections::BTreeMap::new();
    let mut console = String::new();
    let mut diagnostics = String::new();
    let mut saw_marker = false;
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Line::Console(line, at)) => {
                if !saw_marker && line.contains(marker) {
                    saw_marker = true;
                    phases.push(Phase { name: "console_marker".into(), us: micros(at - spawned) });
                }
                if let Some(w) = echo.as_mut() {
                    let _ = writeln!(w, "{line}");
                }
                console.push_str(&line);
                console.push('\n');
            }
            Ok(Line::Diag(line)) => match parse_event(&line) {
                Some(Event::Phase(p)) => phases.push(p),
                Some(Event::Value(k, v)) => {
                    values.insert(k, v);
                }
                None => {
                    diagnostics.push_str(&line);
                    diagnostics.push('\n');
                }
            },
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = child.kill();
                diagnostics.push_str(&format!("isola: {kind} did not finish within {:?}; killed\n", spec.timeout));
                break;
            }
        }
    }
    let status = child.wait().ok();
    phases.push(Phase { name: "exited".into(), us: micros(spawned.elapsed()) });
    let exit_code = status.and_then(|s| s.code());
    Ok(BootReport {
        hypervisor: kind,
        kvm,
        phases,
        values,
        success: saw_marker && !timed_out && exit_code == Some(0),
        exit_code,
        console,
        diagnostics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_parse_and_others_do_not() {
        assert_eq!(
            parse_event("isola-vmm: event=boot_timer us=1234"),
            Some(Event::Phase(Phase { name: "boot_timer".into(), us: 1234 }))
        );
        assert_eq!(parse_event("isola-vmm: event=rss_kib value=2048"), Some(Event::Value("rss_kib".into(), 2048)));
        assert_eq!(parse_event("isola-vmm: event=rss_kib value=x"), None);
        assert_eq!(parse_event("isola-vmm: error: boom"), None);
        assert_eq!(parse_event("isola-vmm: event=x us=abc"), None);
        assert_eq!(parse_event("event=x us=1"), None);
    }
}
