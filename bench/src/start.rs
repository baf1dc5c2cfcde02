//! `isola bench start`: a cold boot against a restore from a snapshot, side by side in
//! one run, with the `ticker` test guest under isola-vmm (it touches 16 MiB, then
//! writes the boot timer every ~50 µs, so a restored copy reports within microseconds
//! of running). Phases per start, from the VMM process's own clock: `vmm_ready`
//! (memory, devices and vCPUs set up: for a restore, the state loaded) and
//! `boot_timer` (the guest's first milestone write); plus the wall time from spawn.
//! With `--clones N`: N restored clones and N cold boots at once, PSS per VMM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use isola_sandbox::boot::Event;

use crate::error::{io, BenchError};
use crate::stats::Summary;

pub(crate) const WAIT: Duration = Duration::from_secs(30);
pub const GUEST_MIB: u64 = 64;

pub use crate::start_run::{run_container_modes, RunMode};
pub use crate::start_sandbox::run_sandbox_modes;

/// A started isola-vmm and its milestone lines.
struct Vmm {
    child: Child,
    started: Instant,
    events: Receiver<(String, u64, Instant)>,
    /// What else it wrote on stderr.
    said: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Vmm {
    fn spawn(bin: &Path, args: &[&std::ffi::OsStr]) -> Result<Self, BenchError> {
        let started = Instant::now();
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("spawn {}", bin.display())))?;
        let (tx, events) = channel();
        let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let said = said.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    match isola_sandbox::boot::parse_event(&line) {
                        Some(Event::Phase(p)) => {
                            let _ = tx.send((p.name, p.us, Instant::now()));
                        }
                        // Kept (a few) for the error when a milestone never comes.
                        _ => {
                            if let Ok(mut s) = said.lock() {
                                if s.len() < 20 {
                                    s.push(line);
                                }
                            }
                        }
                    }
                }
            });
        }
        Ok(Self { child, started, events, said })
    }

    /// Waits for `event`; its time on the VMM's clock and on ours since spawn (µs).
    fn wait(&self, event: &str) -> Result<(u64, u64), BenchError> {
        let until = Instant::now() + WAIT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((name, us, at)) if name == event => {
                    return Ok((us, at.duration_since(self.started).as_micros() as u64))
                }
                Ok(_) => {}
                Err(_) => {
                    let said = self.said.lock().map(|s| s.join("\n")).unwrap_or_default();
                    return Err(BenchError::Failed(format!("isola-vmm: no {event} within {WAIT:?}: {said}")));
                }
            }
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

fn cold(bin: &Path, guest: &Path) -> Result<Vmm, BenchError> {
    let mem = GUEST_MIB.to_string();
    Vmm::spawn(bin, &[os("--kernel"), guest.as_os_str(), os("--mem-mib"), os(&mem), os("--console"), os("none")])
}

fn restore(bin: &Path, snap: &Path) -> Result<Vmm, BenchError> {
    Vmm::spawn(bin, &[os("--restore"), snap.as_os_str(), os("--console"), os("none")])
}

fn control(sock: &Path, cmd: &str) -> Result<String, BenchError> {
    isola_sandbox::backend::isola_vmm::control(sock, cmd, WAIT)
        .map_err(|e| BenchError::Failed(format!("control {cmd}: {e}")))
}

/// Boots the guest to its first milestone and snapshots it into `dir/snap`.
pub fn make_template(bin: &Path, guest: &Path, dir: &Path) -> Result<PathBuf, BenchError> {
    let (sock, snap) = (dir.join("api.sock"), dir.join("snap"));
    let mem = GUEST_MIB.to_string();
    let vmm = Vmm::spawn(
        bin,
        &[
            os("--kernel"),
            guest.as_os_str(),
            os("--mem-mib"),
            os(&mem),
            os("--console"),
            os("none"),
            os("--api-sock"),
            sock.as_os_str(),
            os("--snapshot-to"),
            snap.as_os_str(),
        ],
    )?;
    vmm.wait("boot_timer")?;
    control(&sock, "snapshot")?;
    control(&sock, "stop")?;
    drop(vmm);
    Ok(snap)
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ModeSeries {
    pub mode: String,
    /// VMM start → memory, devices and vCPUs ready (restore: state loaded), µs.
    pub vmm_ready: Option<Summary>,
    /// VMM start → the guest's first milestone write, µs.
    pub guest_running: Option<Summary>,
    /// VMM start → the agent's first answer (a Linux sandbox), µs.
    pub agent_ready: Option<Summary>,
    /// VMM start → the container's exit (a Linux sandbox), µs.
    pub container_exited: Option<Summary>,
    /// Our spawn → that write, µs (exec and loading included).
    pub wall: Option<Summary>,
    pub failures: Vec<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DensityRow {
    pub mode: String,
    pub vmms: usize,
    /// PSS per VMM process, KiB (guest memory included).
    pub pss_kib_per_vmm: u64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StartBench {
    pub guest: String,
    pub guest_mib: u64,
    pub runs: usize,
    pub modes: Vec<ModeSeries>,
    pub density: Vec<DensityRow>,
    /// A Linux sandbox running `true`, cold and restored from a template (isola-vmm
    /// on hardware KVM only).
    pub sandboxes: Vec<ModeSeries>,
    /// `isola run … true` cold, from a template (isola-vmm) and from the warm pool
    /// (this host's default backend).
    pub containers: Vec<ModeSeries>,
    pub backend: String,
}

fn one(vmm: Result<Vmm, BenchError>) -> Result<(u64, u64, u64), BenchError> {
    let vmm = vmm?;
    let (ready, _) = vmm.wait("vmm_ready")?;
    let (running, wall) = vmm.wait("boot_timer")?;
    Ok((ready, running, wall))
}

/// Cold boots and restores, alternating, `runs` each.
pub fn run_start(bin: &Path, guest: &Path, snap: &Path, runs: usize) -> Vec<ModeSeries> {
    /// vmm_ready, guest running and wall samples, and failures, of one mode.
    type Samples = (Vec<u64>, Vec<u64>, Vec<u64>, Vec<String>);
    let mut samples: Vec<Samples> = vec![Default::default(), Default::default()];
    for _ in 0..runs {
        for (i, s) in samples.iter_mut().enumerate() {
            let r = if i == 0 { one(cold(bin, guest)) } else { one(restore(bin, snap)) };
            match r {
                Ok((ready, running, wall)) => {
                    s.0.push(ready);
                    s.1.push(running);
                    s.2.push(wall);
                }
                Err(e) => s.3.push(e.to_string()),
            }
        }
    }
    ["cold", "snapshot"]
        .iter()
        .zip(samples)
        .map(|(mode, (ready, running, wall, failures))| ModeSeries {
            mode: mode.to_string(),
            vmm_ready: Summary::of(&ready),
            guest_running: Summary::of(&running),
            wall: Summary::of(&wall),
            failures,
            ..Default::default()
        })
        .collect()
}

/// `n` VMMs of one mode at once, each past its first milestone; mean PSS per VMM.
fn density_of(mode: &str, n: usize, start: impl Fn() -> Result<Vmm, BenchError>) -> Result<DensityRow, BenchError> {
    let mut vmms = Vec::with_capacity(n);
    for _ in 0..n {
        let v = start()?;
        v.wait("boot_timer")?;
        vmms.push(v);
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut total = 0;
    for v in &vmms {
        let m = crate::memory::of_pid(v.pid(), GUEST_MIB)
            .ok_or_else(|| BenchError::Failed(format!("cannot read smaps of {}", v.pid())))?;
        total += m.pss_kib;
    }
    Ok(DensityRow { mode: mode.to_string(), vmms: n, pss_kib_per_vmm: total / n.max(1) as u64 })
}

pub fn run_density(bin: &Path, guest: &Path, snap: &Path, clones: usize) -> Result<Vec<DensityRow>, BenchError> {
    Ok(vec![density_of("cold", clones, || cold(bin, guest))?, density_of("snapshot", clones, || restore(bin, snap))?])
}

fn ratio(a: Option<Summary>, b: Option<Summary>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.p50 > 0 => format!("{:.3}", a.p50 as f64 / b.p50 as f64),
        _ => "-".into(),
    }
}

fn ms(s: &Option<Summary>) -> String {
    s.map_or("-".into(), |s| format!("{:.2} / {:.2}", s.p50 as f64 / 1000.0, s.p95 as f64 / 1000.0))
}

/// The side-by-side table, with ratios snapshot / cold.
pub fn table(b: &StartBench) -> String {
    let mut out = format!("isola bench start: {} test guest, {} MiB, isola-vmm\n", b.guest, b.guest_mib);
    if !b.modes.is_empty() {
        out += &format!("{} runs per mode (p50 / p95, ms)\n", b.runs);
        out += &format!("{:<10} {:>18} {:>18} {:>18}\n", "mode", "vmm_ready", "guest running", "wall");
    }
    for m in &b.modes {
        out += &format!("{:<10} {:>18} {:>18} {:>18}\n", m.mode, ms(&m.vmm_ready), ms(&m.guest_running), ms(&m.wall));
        for f in &m.failures {
            out += &format!("  FAILED {f}\n");
        }
    }
    if let [c, s] = &b.modes[..] {
        out += &format!(
            "ratio snapshot / cold (p50): vmm_ready {}, guest running {}, wall {}\n",
            ratio(s.vmm_ready, c.vmm_ready),
            ratio(s.guest_running, c.guest_running),
            ratio(s.wall, c.wall)
        );
    }
    for d in &b.density {
        out += &format!("density {:<19} {} at once: PSS {} KiB per VMM\n", d.mode, d.vmms, d.pss_kib_per_vmm);
    }
    for pair in b.density.chunks(2) {
        if let [c, s] = pair {
            if c.pss_kib_per_vmm > 0 {
                out += &format!(
                    "ratio PSS {} / {}: {:.3}\n",
                    s.mode,
                    c.mode,
                    s.pss_kib_per_vmm as f64 / c.pss_kib_per_vmm as f64
                );
            }
        }
    }
    if !b.sandboxes.is_empty() {
        out += &format!("Linux sandbox, container `true`, {} (from VMM spawn, p50 / p95, ms):\n", b.backend);
        out += &format!("{:<14} {:>18} {:>18} {:>18}\n", "mode", "vmm_ready", "agent ready", "container exited");
        for m in &b.sandboxes {
            out += &format!(
                "{:<14} {:>18} {:>18} {:>18}\n",
                m.mode,
                ms(&m.vmm_ready),
                ms(&m.agent_ready),
                ms(&m.container_exited)
            );
            for f in &m.failures {
                out += &format!("  FAILED {f}\n");
            }
        }
        // Modes come in pairs (cold, snapshot), rootfs over virtio-fs then on a disk.
        for pair in b.sandboxes.chunks(2) {
            if let [c, s] = pair {
                out += &format!(
                    "ratio {} / {} (p50): vmm_ready {}, agent ready {}, container exited {}\n",
                    s.mode,
                    c.mode,
                    ratio(s.vmm_ready, c.vmm_ready),
                    ratio(s.agent_ready, c.agent_ready),
                    ratio(s.container_exited, c.container_exited)
                );
            }
        }
    }
    if !b.containers.is_empty() {
        out += &format!("isola run --rootfs R -- true, {} backend (spawn to exit, p50 / p95, ms):\n", b.backend);
        for m in &b.containers {
            out += &format!("{:<13} {:>18}\n", m.mode, ms(&m.wall));
            for f in &m.failures {
                out += &format!("  FAILED {f}\n");
            }
        }
        let cold = b.containers.iter().find(|m| m.mode == "run cold");
        for m in b.containers.iter().filter(|m| m.mode != "run cold") {
            let name = m.mode.trim_start_matches("run ");
            out += &format!("ratio {name} / cold (p50): {}\n", ratio(m.wall, cold.and_then(|c| c.wall)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_ratios_of_snapshot_to_cold() {
        let s = |p50| Summary::of(&[p50]);
        let b = StartBench {
            guest: "ticker".into(),
            guest_mib: 64,
            runs: 1,
            modes: vec![
                ModeSeries {
                    mode: "cold".into(),
                    vmm_ready: s(8000),
                    guest_running: s(20000),
                    wall: s(21000),
                    ..Default::default()
                },
                ModeSeries {
                    mode: "snapshot".into(),
                    vmm_ready: s(2000),
                    guest_running: s(2100),
                    wall: s(4200),
                    ..Default::default()
                },
            ],
            density: vec![
                DensityRow { mode: "cold".into(), vmms: 4, pss_kib_per_vmm: 20000 },
                DensityRow { mode: "snapshot".into(), vmms: 4, pss_kib_per_vmm: 5000 },
            ],
            sandboxes: vec![
                ModeSeries {
                    mode: "cold".into(),
                    agent_ready: s(800000),
                    container_exited: s(900000),
                    ..Default::default()
                },
                ModeSeries {
                    mode: "snapshot".into(),
                    agent_ready: s(40000),
                    container_exited: s(90000),
                    ..Default::default()
                },
            ],
            containers: vec![
                ModeSeries { mode: "run cold".into(), wall: s(1000000), ..Default::default() },
                ModeSeries { mode: "run snapshot".into(), wall: s(100000), ..Default::default() },
                ModeSeries { mode: "run pool".into(), wall: s(250000), ..Default::default() },
            ],
            backend: "qemu".into(),
        };
        let t = table(&b);
        assert!(t.contains("vmm_ready 0.250, guest running 0.105, wall 0.200"), "{t}");
        assert!(t.contains("ratio PSS snapshot / cold: 0.250"), "{t}");
        assert!(t.contains("ratio pool / cold (p50): 0.250"), "{t}");
        assert!(t.contains("ratio snapshot / cold (p50): 0.100"), "{t}");
        assert!(t.contains("agent ready 0.050, container exited 0.100"), "{t}");
    }
}
