//! Builds a VM from a [`VmConfig`] and runs it to a verdict.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{IoEventAddress, Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

mod config;
mod vcpus;

use config::kvm_err;
pub use config::{
    Confine, ConsoleOut, FsConfig, NetConfig, VmConfig, VmError, VmReport, VsockConfig, MAX_VCPUS, VIRTIO_IRQ_BASE,
};
pub use vcpus::log_event;
use vcpus::{kick_signal, run_vcpus};

use crate::boot;
use crate::devices::{BootTimer, Bus, SerialConsole, VmEvent, I8042, I8042_PORT_BASE, SERIAL_IRQ, SERIAL_PORT_BASE};
use crate::memory::{self, Backing, BOOT_TIMER_ADDR, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE};
use crate::vcpu::{Vcpu, VcpuShared};
use crate::virtio::balloon::BalloonControl;
use crate::virtio::fs::Fs;
use crate::virtio::net::{Net, Tap};
use crate::virtio::vsock::{UnixMuxer, Vsock};

/// How the vCPUs' initial state is made: a kernel boot, or a snapshot's (with the
/// devices it was taken with, which this VM must have too).
enum Origin {
    Boot,
    Restore { state: Box<crate::snapshot::VmState>, devices: Vec<String> },
}

/// Runs the VM to completion. `start` is when the VMM process started.
pub fn run(config: &VmConfig, start: Instant) -> Result<VmReport, VmError> {
    config.validate()?;
    let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
    // Read now: KVM_GET_API_VERSION is not allowed once confined.
    let kvm_api = kvm.get_api_version();
    let (origin, mem_bytes, vcpu_count, memory_file) = match &config.restore_from {
        Some(dir) => {
            let (header, state, file) = crate::snapshot::load(dir, kvm_api)?;
            let origin = Origin::Restore { state: Box::new(state), devices: header.devices };
            (origin, header.mem_bytes, header.vcpus, Some(file))
        }
        None => (Origin::Boot, config.mem_bytes(), config.vcpus, None),
    };
    let vm = Arc::new(kvm.create_vm().map_err(kvm_err("create vm"))?);
    let mem = match (&memory_file, config.backing) {
        // Shared with a vhost-user daemon: a copy in a memfd, not a private mapping.
        (Some(f), Backing::Shared) => memory::copy_snapshot_memory(f, mem_bytes)?,
        (Some(f), Backing::Anonymous) => memory::map_snapshot_memory(f, mem_bytes)?,
        (None, backing) => memory::create_guest_memory(mem_bytes, backing)?,
    };
    drop(memory_file);
    register_memory(&vm, &mem)?;
    // Finer milestones than `vmm_ready`, for benchmarks that ask where setup goes.
    log_event("memory_ready", start.elapsed());
    setup_irqchip(&vm)?;
    let (virtio, balloon) = virtio_devices(config)?;
    let saved_serial = match &origin {
        Origin::Restore { state, .. } => Some(state.serial.clone()),
        Origin::Boot => None,
    };
    let (events_tx, events) = channel();
    let (shared, devices) =
        build_devices(&vm, config, vcpu_count, virtio, &mem, start, events_tx.clone(), saved_serial)?;
    log_event("devices_ready", start.elapsed());
    let supported = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(kvm_err("get supported cpuid"))?;
    let mut vcpus = Vec::with_capacity(usize::from(vcpu_count));
    match &origin {
        Origin::Restore { state, devices: names } => {
            restore_virtio(&devices, &state.virtio, names)?;
            for id in 0..vcpu_count {
                vcpus.push(Vcpu::for_restore(&vm, id, vcpu_count, &supported, shared.clone())?);
            }
            restore_vm_state(&vm, state)?;
            for (vcpu, saved) in vcpus.iter_mut().zip(&state.vcpus) {
                vcpu.apply(saved)?;
            }
        }
        Origin::Boot => {
            let (kernel, boot_info, cr3) = load_guest(config, &mem, mem_bytes, devices.virtio.len())?;
            let msrs = kvm.get_msr_index_list().map_err(kvm_err("get msr index list"))?;
            let msrs: Vec<u32> = msrs.as_slice().iter().copied().take(crate::vcpu::state::MAX_MSRS).collect();
            for id in 0..vcpu_count {
                let mut v = Vcpu::new(&vm, id, vcpu_count, &supported, &mem, &kernel, boot_info, cr3, shared.clone())?;
                v.set_snapshot_msrs(msrs.clone());
                vcpus.push(v);
            }
        }
    }
    log_event("vcpus_ready", start.elapsed());
    let mut target = match &config.snapshot_to {
        Some(dir) => Some(crate::snapshot::SnapshotTarget::create(dir, mem_bytes)?),
        None => None,
    };
    let listener = match &config.api_sock {
        Some(p) => Some(crate::control::bind(p).map_err(|source| VmError::Setup { what: "control socket", source })?),
        None => None,
    };
    // Read at exit for the memory report; there is no /proc inside the jail.
    let status = File::open("/proc/self/status").ok();
    if config.jailed {
        let keep: Vec<PathBuf> =
            config.vsock.iter().filter_map(|v| v.uds_path.parent().map(Path::to_path_buf)).collect();
        crate::jail::pivot(&keep).map_err(VmError::Jail)?;
    }
    if config.confine == Confine::Full || config.confine == Confine::SelfTest {
        crate::spawner::start().map_err(|source| VmError::Setup { what: "device thread spawner", source })?;
    }
    // A snapshot writes the guest's whole memory: the file-size limit must allow it.
    let max_file = if target.is_some() {
        crate::confine::MAX_FILE_BYTES.max(mem_bytes + (16 << 20))
    } else {
        crate::confine::MAX_FILE_BYTES
    };
    match config.confine {
        Confine::Off => log::warn!("not confined (--no-confine): a guest that escapes into the VMM owns the host"),
        c => {
            crate::confine::confine(c != Confine::NoSeccomp, config.user, max_file).map_err(VmError::Confine)?;
            if c == Confine::SelfTest {
                // What the VMM does after confinement (threads for vCPUs and device
                // workers) must still work; only then the forbidden call. Sixteen live at
                // once on 64 KiB stacks, so clone's pointer arguments differ in every bit
                // a filter on the wrong argument could test.
                let barrier = Arc::new(std::sync::Barrier::new(16));
                let threads: Vec<_> = (0..16)
                    .filter_map(|_| {
                        let b = barrier.clone();
                        std::thread::Builder::new().stack_size(64 << 10).spawn(move || b.wait()).ok()
                    })
                    .collect();
                if threads.len() == 16 && threads.into_iter().all(|t| t.join().is_ok()) {
                    eprintln!("isola-vmm: confinement self-test: threads started");
                }
                // SAFETY: socket(2) with plain integers; the filter must kill us here.
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
                log::error!("confinement self-test: a forbidden syscall was allowed");
                return Err(VmError::Confine(crate::confine::ConfineError::Filter("self-test syscall allowed".into())));
            }
        }
    }
    // Restored devices start only now, so their threads get the worker filter.
    if let Origin::Restore { .. } = &origin {
        for t in &devices.virtio {
            let mut t = t.lock().map_err(|_| VmError::Config("virtio transport lock poisoned".into()))?;
            t.start_restored().map_err(VmError::Restore)?;
        }
    }
    if let Some(listener) = listener {
        let header = crate::snapshot::Header::new(kvm_api, mem_bytes, vcpu_count, devices.names());
        let control = crate::control::Control {
            vm: vm.clone(),
            mem: mem.clone(),
            gate: shared.pause.clone(),
            devices,
            target: target.take(),
            header,
            events: events_tx,
            balloon,
        };
        crate::spawner::spawn("control", move || control.run(listener))
            .map_err(|source| VmError::Setup { what: "control thread", source })?;
    }
    let ready = start.elapsed();
    log_event("vmm_ready", ready);
    match &config.restore_from {
        Some(dir) => log::info!("restoring {} ({} MiB, {vcpu_count} vcpu(s))", dir.display(), mem_bytes >> 20),
        None => log::info!("booting {} with {} MiB, {vcpu_count} vcpu(s)", config.kernel.display(), mem_bytes >> 20),
    }
    let outcome = run_vcpus(vcpus, &shared, &events, config.timeout, start);
    report_memory(&mem, status);
    // Guest memory must outlive the vCPU threads; they are joined inside run_vcpus.
    drop(mem);
    let (boot_timer, exited) = outcome?;
    Ok(VmReport { ready, boot_timer, exited })
}

/// Loads the kernel, initrd, command line and boot structures; returns the kernel,
/// the boot-info address and the page tables' root.
fn load_guest(
    config: &VmConfig,
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    virtio_count: usize,
) -> Result<(boot::LoadedKernel, u64, u64), VmError> {
    let kernel = boot::load_kernel(mem, &config.kernel, memory::low_ram_end(mem_bytes))?;
    let initrd = match &config.initrd {
        Some(p) => Some(boot::load_initrd(mem, p, &kernel, mem_bytes)?),
        None => None,
    };
    let cmdline = boot::build_cmdline(&config.cmdline, &virtio_cmdline(virtio_count))?;
    let boot_info = boot::write_boot_info(mem, &kernel, &cmdline, initrd, mem_bytes)?;
    boot::mptable::write(mem, config.vcpus)?;
    let cr3 = boot::setup_identity_paging(mem)?;
    Ok((kernel, boot_info, cr3))
}

/// Checks the VM has the snapshot's devices and puts back their transports.
fn restore_virtio(
    devices: &crate::control::SnapshotDevices,
    saved: &[crate::virtio::snapshot::TransportSnapshot],
    names: &[String],
) -> Result<(), VmError> {
    if devices.names() != names {
        return Err(crate::snapshot::SnapshotError::Devices {
            snapshot: names.join(", "),
            config: devices.names().join(", "),
        }
        .into());
    }
    if let Some(why) = devices.unsupported() {
        return Err(crate::snapshot::SnapshotError::Unsupported(why).into());
    }
    for (t, s) in devices.virtio.iter().zip(saved) {
        let mut t = t.lock().map_err(|_| VmError::Config("virtio transport lock poisoned".into()))?;
        t.restore(s).map_err(|e| VmError::Config(format!("restoring a virtio device: {e}")))?;
    }
    Ok(())
}

/// Puts back the in-kernel irqchip, the PIT and the clock.
fn restore_vm_state(vm: &VmFd, st: &crate::snapshot::VmState) -> Result<(), VmError> {
    for chip in &st.irqchips {
        vm.set_irqchip(chip).map_err(kvm_err("set irqchip"))?;
    }
    vm.set_pit2(&st.pit).map_err(kvm_err("set pit2"))?;
    vm.set_clock(&st.clock).map_err(kvm_err("set clock"))?;
    Ok(())
}

/// Prints `event=rss_kib` (this process) and `event=guest_resident_kib` (guest RAM pages
/// actually in memory), so callers can compute the VMM's own overhead.
fn report_memory(mem: &GuestMemoryMmap, status: Option<File>) {
    let text = status.and_then(|mut f| {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).ok().map(|_| s)
    });
    let rss = text.and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    });
    let guest: u64 = mem.iter().map(|r| resident_bytes(r.as_ptr(), r.len() as usize)).sum();
    if let Some(rss) = rss {
        eprintln!("isola-vmm: event=rss_kib value={rss}");
    }
    eprintln!("isola-vmm: event=guest_resident_kib value={}", guest / 1024);
}

/// Bytes of `[addr, addr+len)` resident in memory, by mincore(2).
fn resident_bytes(addr: *mut u8, len: usize) -> u64 {
    const PAGE: usize = 4096;
    let mut vec = vec![0u8; len.div_ceil(PAGE)];
    // SAFETY: [addr, addr+len) is one live mapping owned by guest memory, page aligned
    // (mmap'd), and `vec` has one byte per page of it.
    let rc = unsafe { libc::mincore(addr.cast(), len, vec.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    vec.iter().filter(|b| *b & 1 == 1).count() as u64 * PAGE as u64
}

fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which outlives every vCPU
        // (run() joins the vCPU threads before dropping it), and slots do not overlap.
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm_err("set user memory region"))?;
    }
    Ok(())
}

fn setup_irqchip(vm: &VmFd) -> Result<(), VmError> {
    // Both addresses sit in the last MiB below 4 GiB, inside our MMIO gap, never RAM.
    vm.set_identity_map_address(0xfffb_c000).map_err(kvm_err("set identity map address"))?;
    vm.set_tss_address(0xfffb_d000).map_err(kvm_err("set tss address"))?;
    vm.create_irq_chip().map_err(kvm_err("create irqchip"))?;
    let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
    vm.create_pit2(pit).map_err(kvm_err("create pit"))?;
    Ok(())
}

fn console_writer(out: &ConsoleOut) -> Result<Box<dyn Write + Send>, VmError> {
    Ok(match out {
        ConsoleOut::Stdout => Box::new(std::io::stdout()),
        ConsoleOut::Discard => Box::new(std::io::sink()),
        ConsoleOut::File(p) => {
            // Only its owner may read what the guest printed.
            let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(p);
            Box::new(f.map_err(|source| VmError::Console { path: p.display().to_string(), source })?)
        }
    })
}

/// The virtio devices `config` asks for, in slot order (their backends opened now, so
/// a bad tap or socket fails before anything boots).
fn virtio_devices(config: &VmConfig) -> Result<(VirtioDevices, Option<Arc<BalloonControl>>), VmError> {
    let mut v: Vec<Box<dyn crate::virtio::VirtioDevice>> = Vec::new();
    if let Some(c) = &config.vsock {
        let muxer = UnixMuxer::new(c.guest_cid, &c.uds_path)?;
        v.push(Box::new(Vsock::new(c.guest_cid, Box::new(muxer))));
    }
    if let Some(n) = &config.net {
        let tap = Tap::open(&n.tap)?;
        v.push(Box::new(Net::new(n.mac, Box::new(tap))));
    }
    if let Some(f) = &config.fs {
        v.push(Box::new(Fs::connect(&f.tag, &f.socket)?));
    }
    for d in &config.disks {
        let backend: Box<dyn crate::virtio::block::DiskBackend> = match &d.path {
            Some(p) => Box::new(crate::virtio::block::DiskFile::open(p, d.read_only)?),
            None => Box::new(crate::virtio::block::EmptyDisk),
        };
        v.push(Box::new(crate::virtio::block::Block::new(backend, d.read_only, d.serial.clone())));
    }
    let mut balloon = None;
    if config.balloon {
        let (device, control) = crate::virtio::balloon::Balloon::new();
        v.push(Box::new(device));
        balloon = Some(control);
    }
    Ok((v, balloon))
}

type VirtioDevices = Vec<Box<dyn crate::virtio::VirtioDevice>>;

/// The MMIO window and interrupt line of virtio slot `slot`.
fn virtio_slot(slot: usize) -> (u64, u32) {
    (VIRTIO_MMIO_BASE + slot as u64 * VIRTIO_MMIO_SIZE, VIRTIO_IRQ_BASE + slot as u32)
}

/// `virtio_mmio.device=` entries telling Linux where our `n` virtio devices are.
fn virtio_cmdline(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let (base, irq) = virtio_slot(i);
            format!("virtio_mmio.device=4K@{base:#x}:{irq}")
        })
        .collect()
}

/// Puts a virtio device behind an MMIO transport in `slot`, with an irqfd and (when KVM
/// allows) ioeventfds so queue notifications skip the vCPU thread.
fn add_virtio(
    vm: &VmFd,
    bus: &mut Bus,
    mem: &GuestMemoryMmap,
    slot: usize,
    device: Box<dyn crate::virtio::VirtioDevice>,
) -> Result<Arc<Mutex<crate::virtio::MmioTransport>>, VmError> {
    let (base, irq) = virtio_slot(slot);
    let irqfd = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| VmError::Setup { what: "virtio irqfd", source })?;
    vm.register_irqfd(&irqfd, irq).map_err(kvm_err("register virtio irqfd"))?;
    let interrupt = Arc::new(crate::virtio::Interrupt::new(irqfd));
    let transport = crate::virtio::MmioTransport::new(device, mem.clone(), interrupt)
        .map_err(|source| VmError::Setup { what: "virtio transport", source })?;
    for (i, evt) in transport.queue_events().iter().enumerate() {
        let addr = IoEventAddress::Mmio(base + crate::virtio::NOTIFY_REG_OFFSET);
        if let Err(e) = vm.register_ioevent(evt, &addr, i as u32) {
            // The transport signals the queue itself when the write reaches it.
            log::debug!("virtio slot {slot}: no ioeventfd for queue {i}: {e}");
        }
    }
    let transport = Arc::new(Mutex::new(transport));
    bus.insert(base, VIRTIO_MMIO_SIZE, transport.clone())?;
    Ok(transport)
}

#[allow(clippy::too_many_arguments)]
fn build_devices(
    vm: &VmFd,
    config: &VmConfig,
    vcpus: u8,
    virtio: Vec<Box<dyn crate::virtio::VirtioDevice>>,
    mem: &GuestMemoryMmap,
    start: Instant,
    events: Sender<VmEvent>,
    saved: Option<crate::devices::SerialSnapshot>,
) -> Result<(VcpuShared, crate::control::SnapshotDevices), VmError> {
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    let serial_irq =
        EventFd::new(libc::EFD_NONBLOCK).map_err(|source| VmError::Setup { what: "serial eventfd", source })?;
    vm.register_irqfd(&serial_irq, SERIAL_IRQ).map_err(kvm_err("register serial irqfd"))?;
    let out = console_writer(&config.console)?;
    let serial = match &saved {
        Some(s) => SerialConsole::restore(serial_irq, out, s)?,
        None => SerialConsole::new(serial_irq, out),
    };
    let serial = Arc::new(Mutex::new(serial));
    pio.insert(SERIAL_PORT_BASE, 8, serial.clone())?;
    pio.insert(I8042_PORT_BASE, 5, Arc::new(Mutex::new(I8042::new(events.clone()))))?;
    // A restored VM's milestones count afresh: its own log, its own few (the
    // template's count could have used them all up before the snapshot).
    let boot_timer = Arc::new(Mutex::new(BootTimer::new(start, events)));
    mmio.insert(BOOT_TIMER_ADDR, 0x1000, boot_timer.clone())?;
    let mut transports = Vec::with_capacity(virtio.len());
    for (slot, device) in virtio.into_iter().enumerate() {
        transports.push(add_virtio(vm, &mut mmio, mem, slot, device)?);
    }
    let pause = Arc::new(crate::vcpu::pause::PauseGate::new(usize::from(vcpus), kick_signal()));
    let shared = VcpuShared { pio, mmio, stop: Arc::new(AtomicBool::new(false)), pause };
    Ok((shared, crate::control::SnapshotDevices { serial, boot_timer, virtio: transports }))
}
