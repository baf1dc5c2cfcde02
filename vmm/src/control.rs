//! The control API: a unix socket (`--api-sock`) taking one command per line and
//! answering one line, `ok …` or `error: …`:
//! - `pause`: every vCPU out of the guest; `resume`: running again;
//! - `snapshot`: pauses (if running) and saves the VM into the `--snapshot-to`
//!   directory opened at start; the VM stays paused;
//! - `stop`: ends the VM (exit status 0);
//! - `balloon`: what the balloon holds and what free page reporting gave back;
//!   `balloon MIB`: asks the guest to hold MIB MiB in its balloon (0: give it all
//!   back).
//!
//! The socket is the caller's to protect: it is created 0600 in a directory the caller
//! chose, like the vsock socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_irqchip, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE};
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

use crate::devices::{BootTimer, SerialConsole, VmEvent};
use crate::snapshot::{self, Header, SnapshotTarget, VmState};
use crate::vcpu::pause::{PauseError, PauseGate};
use crate::virtio::snapshot::DeviceSnapshotError;

/// Why a control command failed (answered as `error: …`).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("no snapshot directory (start isola-vmm with --snapshot-to DIR)")]
    NoTarget,
    #[error(transparent)]
    Pause(#[from] PauseError),
    #[error("virtio device {device}: {source}")]
    Device { device: &'static str, source: DeviceSnapshotError },
    #[error("{0} lock poisoned")]
    Poisoned(&'static str),
    #[error("kvm {what}: {source}")]
    Kvm { what: &'static str, source: kvm_ioctls::Error },
    #[error("unknown command {0:?} (pause, resume, snapshot, stop, balloon [MIB])")]
    Unknown(String),
    #[error("this VM has no balloon (start isola-vmm with --balloon)")]
    NoBalloon,
    #[error("balloon target {0:?} is not a size in MiB")]
    BalloonTarget(String),
    #[error("cannot tell the guest its balloon target: {0}")]
    BalloonNotify(std::io::Error),
}

/// Longest command line read; longer ones end the connection.
const MAX_LINE: u64 = 256;

/// The devices a snapshot reads besides the vCPUs and KVM's own.
#[derive(Clone)]
pub struct SnapshotDevices {
    pub serial: Arc<Mutex<SerialConsole>>,
    pub boot_timer: Arc<Mutex<BootTimer>>,
    /// The virtio-mmio transports, in slot order.
    pub virtio: Vec<Arc<Mutex<crate::virtio::MmioTransport>>>,
}

impl SnapshotDevices {
    /// The names a snapshot's header lists, in slot order.
    pub fn names(&self) -> Vec<String> {
        self.virtio
            .iter()
            .map(|t| t.lock().map_or("poisoned", |t| crate::virtio::device_name(t.device_type())).to_string())
            .collect()
    }

    /// Devices that cannot be snapshotted, by name (None: all can).
    pub fn unsupported(&self) -> Option<String> {
        let names: Vec<String> = self
            .virtio
            .iter()
            .filter_map(|t| t.lock().ok().filter(|t| !t.supports_snapshot()).map(|t| t.device_type()))
            .map(|ty| format!("{} devices", crate::virtio::device_name(ty)))
            .collect();
        (!names.is_empty()).then(|| names.join(", "))
    }

    /// Quiesces every transport and returns their states; on an error the ones
    /// already stopped run again.
    fn quiesce(&self) -> Result<Vec<crate::virtio::snapshot::TransportSnapshot>, ControlError> {
        let mut out = Vec::with_capacity(self.virtio.len());
        for t in &self.virtio {
            let r = t.lock().map_err(|_| ControlError::Poisoned("virtio transport")).and_then(|mut t| {
                let device = crate::virtio::device_name(t.device_type());
                t.snapshot().map_err(|source| ControlError::Device { device, source })
            });
            match r {
                Ok(s) => out.push(s),
                Err(e) => {
                    self.resume();
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Runs every quiesced device again.
    fn resume(&self) {
        for t in &self.virtio {
            if let Ok(mut t) = t.lock() {
                if let Err(e) = t.resume_after_snapshot() {
                    log::warn!("virtio device {}: not resumed after the snapshot: {e}", t.device_type());
                }
            }
        }
    }
}

pub struct Control {
    pub vm: Arc<VmFd>,
    pub mem: GuestMemoryMmap,
    pub gate: Arc<PauseGate>,
    pub devices: SnapshotDevices,
    /// Where `snapshot` writes; None: the command is refused.
    pub target: Option<SnapshotTarget>,
    /// The header of a snapshot of this VM, before the state's length and hash.
    pub header: Header,
    pub events: Sender<VmEvent>,
    /// The balloon's target and counts, when the VM has one.
    pub balloon: Option<Arc<crate::virtio::balloon::BalloonControl>>,
}

fn irqchip(vm: &VmFd, chip_id: u32) -> Result<kvm_irqchip, ControlError> {
    let mut c = kvm_irqchip { chip_id, ..Default::default() };
    let what = match chip_id {
        KVM_IRQCHIP_PIC_MASTER => "get irqchip (PIC master)",
        KVM_IRQCHIP_PIC_SLAVE => "get irqchip (PIC slave)",
        _ => "get irqchip (IO-APIC)",
    };
    vm.get_irqchip(&mut c).map_err(|source| ControlError::Kvm { what, source })?;
    Ok(c)
}

impl Control {
    /// The VM's state besides memory; every vCPU must be parked.
    fn vm_state(&self, virtio: Vec<crate::virtio::snapshot::TransportSnapshot>) -> Result<VmState, ControlError> {
        let vcpus = self.gate.capture()?;
        let serial = self.devices.serial.lock().map_err(|_| ControlError::Poisoned("serial"))?.snapshot();
        let boot_timer_fired =
            self.devices.boot_timer.lock().map_err(|_| ControlError::Poisoned("boot timer"))?.fired();
        Ok(VmState {
            vcpus,
            irqchips: vec![
                irqchip(&self.vm, KVM_IRQCHIP_PIC_MASTER)?,
                irqchip(&self.vm, KVM_IRQCHIP_PIC_SLAVE)?,
                irqchip(&self.vm, KVM_IRQCHIP_IOAPIC)?,
            ],
            pit: self.vm.get_pit2().map_err(|source| ControlError::Kvm { what: "get pit2", source })?,
            // The guest's clock resumes where it stopped; flags describe this host's
            // clock at saving and are not for a restore to apply.
            clock: kvm_bindings::kvm_clock_data {
                flags: 0,
                ..self.vm.get_clock().map_err(|source| ControlError::Kvm { what: "get clock", source })?
            },
            serial,
            boot_timer_fired,
            virtio,
        })
    }

    fn snapshot(&mut self) -> Result<String, ControlError> {
        if let Some(why) = self.devices.unsupported() {
            return Err(snapshot::SnapshotError::Unsupported(why).into());
        }
        if self.target.is_none() {
            return Err(ControlError::NoTarget);
        }
        self.gate.pause()?;
        // Devices stop too: nothing writes guest memory while it is saved.
        let virtio = self.devices.quiesce()?;
        let saved = self.vm_state(virtio).and_then(|state| {
            let target = self.target.as_mut().ok_or(ControlError::NoTarget)?;
            Ok(snapshot::save(target, self.header.clone(), &state, &self.mem)?)
        });
        self.devices.resume();
        let r = saved?;
        Ok(format!(
            "ok memory_bytes={} state_bytes={} ms={}",
            r.memory_bytes_written,
            r.state_bytes,
            r.took.as_millis()
        ))
    }

    /// Sets the balloon's target (when given) and says where it stands.
    fn balloon(&mut self, mib: Option<&str>) -> Result<String, ControlError> {
        let b = self.balloon.as_ref().ok_or(ControlError::NoBalloon)?;
        if let Some(mib) = mib {
            let bytes = mib.parse::<u64>().ok().and_then(|m| m.checked_mul(1 << 20));
            let bytes = bytes.ok_or_else(|| ControlError::BalloonTarget(mib.escape_debug().to_string()))?;
            b.set_target(bytes).map_err(ControlError::BalloonNotify)?;
        }
        let c = b.counters();
        Ok(format!(
            "ok target_mib={} actual_mib={} reported_mib={} inflated_pages={} deflated_pages={} refused={}",
            b.target_bytes() >> 20,
            b.actual_bytes() >> 20,
            c.reported_bytes >> 20,
            c.inflated_pages,
            c.deflated_pages,
            c.refused
        ))
    }

    /// One command's answer line.
    pub fn handle(&mut self, line: &str) -> String {
        let r = match line.trim() {
            "pause" => self.gate.pause().map(|()| "ok".to_string()).map_err(ControlError::from),
            "resume" => self.gate.resume().map(|()| "ok".to_string()).map_err(ControlError::from),
            "snapshot" => self.snapshot(),
            // Answered first, ended by `serve` after: the VM ending closes this socket.
            "stop" => Ok("ok".into()),
            "balloon" => self.balloon(None),
            other => match other.strip_prefix("balloon ") {
                Some(mib) => self.balloon(Some(mib.trim())),
                None => Err(ControlError::Unknown(other.escape_debug().to_string())),
            },
        };
        r.unwrap_or_else(|e| format!("error: {e}"))
    }

    fn serve(&mut self, stream: UnixStream) {
        let Ok(mut out) = stream.try_clone() else { return };
        let mut reader = BufReader::new(std::io::Read::take(stream, MAX_LINE * 64));
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::Read::take(&mut reader, MAX_LINE).read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if !line.ends_with('\n') => {
                    let _ = writeln!(out, "error: command longer than {MAX_LINE} bytes");
                    return;
                }
                Ok(_) => {}
            }
            let answer = self.handle(&line);
            let written = writeln!(out, "{answer}").and_then(|()| out.flush());
            // The answer to `stop` is out before the VM ends (and takes this socket).
            if line.trim() == "stop" {
                let _ = self.events.send(VmEvent::Stop);
                return;
            }
            if written.is_err() {
                return;
            }
        }
    }

    /// Serves connections one at a time until the process ends.
    pub fn run(mut self, listener: UnixListener) {
        if let Err(e) = crate::confine::enter_thread(crate::confine::ThreadKind::Control) {
            log::error!("control thread: {e}");
            return;
        }
        for stream in listener.incoming().flatten() {
            self.serve(stream);
        }
    }
}

/// Binds the control socket, readable and writable by its owner only from the moment
/// anyone could reach it: it is bound and chmod'ed inside a fresh directory only its
/// owner may enter, then renamed into place (a connect is by inode, so it follows).
pub fn bind(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let name = path.file_name().ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let private = path.with_file_name(format!(".{}.bind", name.to_string_lossy()));
    let _ = std::fs::remove_file(path);
    // A fresh directory (mkdir fails on anything already there, a planted one too).
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let inner = private.join("s");
    let bound = UnixListener::bind(&inner).and_then(|l| {
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&inner, path)?;
        Ok(l)
    });
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&private);
    bound
}

#[cfg(test)]
mod bind_tests {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[test]
    fn the_socket_appears_private_and_answers_and_a_planted_directory_is_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("api.sock");
        let l = super::bind(&p).expect("bind");
        let m = std::fs::symlink_metadata(&p).expect("socket");
        assert!(m.file_type().is_socket());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        std::os::unix::net::UnixStream::connect(&p).expect("connects by its final name");
        l.accept().expect("accepted");
        assert_eq!(std::fs::read_dir(d.path()).expect("dir").count(), 1, "nothing else left");
        std::fs::create_dir(d.path().join(".other.sock.bind")).expect("plant");
        assert!(super::bind(&d.path().join("other.sock")).is_err());
    }
}
