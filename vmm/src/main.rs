//! `isola-vmm`: boots one guest and exits with its verdict.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use isola_vmm::memory::Backing;
use isola_vmm::{Confine, ConsoleOut, FsConfig, NetConfig, VmConfig, VsockConfig};

/// Boot a kernel in a KVM microVM.
#[derive(Parser, Debug)]
#[command(name = "isola-vmm", version)]
struct Args {
    /// Kernel: ELF vmlinux (PVH entry if it has the note) or bzImage.
    #[arg(long, required_unless_present = "restore")]
    kernel: Option<PathBuf>,
    /// Start from this snapshot directory (made by the control API's `snapshot`)
    /// instead of booting: memory, vCPUs and devices as they were. The guest's memory
    /// and vCPU count come from the snapshot; memory is mapped copy-on-write from it,
    /// or copied into shared memory with --shared-memory (virtio-fs).
    #[arg(long, conflicts_with_all = ["kernel", "initrd"])]
    restore: Option<PathBuf>,
    /// Serve the control API (pause, resume, snapshot, stop) on this unix socket.
    #[arg(long)]
    api_sock: Option<PathBuf>,
    /// Where the control API's `snapshot` writes (created now, empty).
    #[arg(long, requires = "api_sock")]
    snapshot_to: Option<PathBuf>,
    /// Initramfs (cpio) to hand the kernel.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "console=ttyS0 reboot=k panic=-1")]
    cmdline: String,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    mem_mib: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u8,
    /// Serial console destination: "stdout", "none", or a file path.
    #[arg(long, default_value = "stdout")]
    console: String,
    /// Stop the guest after this many milliseconds and fail.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Waits this long before setting anything up: a deliberately slower VMM, so
    /// `isola bench ab` can show that it detects a slowdown. Never needed otherwise.
    #[arg(long, default_value_t = 0, hide = true)]
    start_delay_ms: u64,
    /// Do not confine the VMM (no seccomp filter, capabilities kept): for debugging
    /// only; a guest that escapes into the VMM then owns the host.
    #[arg(long)]
    no_confine: bool,
    /// Confine, but without the seccomp filter: for finding a missing syscall; unsafe.
    #[arg(long)]
    no_seccomp: bool,
    /// Run the guest as this uid (and --gid) once KVM, memory, devices and sockets are
    /// open. Host sockets the guest connects to (`<uds>_<port>`) must then be
    /// reachable by that user.
    #[arg(long, requires = "gid")]
    uid: Option<u32>,
    #[arg(long, requires = "uid")]
    gid: Option<u32>,
    /// Run in a jail (needs root): own mount, IPC and PID namespaces, pivoted into an
    /// empty read-only root holding only the vsock socket's directory.
    #[arg(long)]
    jail: bool,
    /// After confining, make a forbidden syscall (the filter must kill the VMM).
    #[arg(long, hide = true)]
    confine_selftest: bool,
    /// Back guest RAM with a shareable memfd (needed by vhost-user devices).
    #[arg(long)]
    shared_memory: bool,
    /// Give the guest a virtio-vsock device backed by this host unix socket
    /// (`CONNECT <port>` for host-initiated streams, `<path>_<port>` for the guest's).
    #[arg(long)]
    vsock_uds: Option<PathBuf>,
    /// The guest's vsock CID.
    #[arg(long, default_value_t = 3)]
    vsock_cid: u64,
    /// Give the guest a virtio-net device on this tap (created if it does not exist,
    /// and then gone when isola-vmm exits).
    #[arg(long)]
    tap: Option<String>,
    /// The guest's MAC address.
    #[arg(long, default_value = "02:49:53:00:00:02")]
    mac: String,
    /// Give the guest a virtio-fs device served by the vhost-user daemon (virtiofsd)
    /// listening here; needs --shared-memory.
    #[arg(long)]
    fs_socket: Option<PathBuf>,
    /// A virtio-blk disk: `PATH[,ro][,id=SERIAL]` (repeat for more; the guest sees them
    /// as vda, vdb, … and finds each by its serial).
    #[arg(long = "disk")]
    disks: Vec<isola_vmm::virtio::block::DiskSpec>,
    /// An empty read-only disk with this serial, after the --disk ones: a template's
    /// slot that a clone restored from it fills with its own `--disk`.
    #[arg(long = "disk-placeholder", value_parser = isola_vmm::virtio::block::DiskSpec::placeholder)]
    placeholders: Vec<isola_vmm::virtio::block::DiskSpec>,
    /// Give the guest a virtio-balloon device: pages it frees (and pages it gives up
    /// when the control API's `balloon MIB` sets a target) go back to the host.
    #[arg(long)]
    balloon: bool,
    /// The virtio-fs tag the guest mounts.
    #[arg(long, default_value = "isola-shared")]
    fs_tag: String,
}

fn main() -> ExitCode {
    let start = Instant::now();
    // No colour: on a terminal, env_logger would ask it (ioctl TCGETS) at every line,
    // and once confined no thread may make that call (the filter killed a VMM whose
    // stderr was a console at its first warning).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .write_style(env_logger::WriteStyle::Never)
        .init();
    let args = Args::parse();
    // First, while this process has one thread: the jail forks.
    if args.jail {
        if let Err(e) = isola_vmm::jail::enter(args.uid.zip(args.gid), isola_vmm::confine::confine_supervisor) {
            eprintln!("isola-vmm: error: {e}");
            return ExitCode::from(1);
        }
    }
    std::thread::sleep(Duration::from_millis(args.start_delay_ms));
    let console = match args.console.as_str() {
        "stdout" => ConsoleOut::Stdout,
        "none" => ConsoleOut::Discard,
        path => ConsoleOut::File(PathBuf::from(path)),
    };
    let net = match args.tap {
        Some(tap) => match isola_vmm::virtio::net::parse_mac(&args.mac) {
            Ok(mac) => Some(NetConfig { tap, mac }),
            Err(e) => {
                eprintln!("isola-vmm: error: {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    let config = VmConfig {
        kernel: args.kernel.unwrap_or_default(),
        initrd: args.initrd,
        cmdline: args.cmdline,
        mem_mib: args.mem_mib,
        vcpus: args.vcpus,
        console,
        timeout: args.timeout_ms.map(Duration::from_millis),
        backing: if args.shared_memory { Backing::Shared } else { Backing::Anonymous },
        vsock: args.vsock_uds.map(|uds_path| VsockConfig { guest_cid: args.vsock_cid, uds_path }),
        net,
        fs: args.fs_socket.map(|socket| FsConfig { socket, tag: args.fs_tag }),
        disks: args.disks.into_iter().chain(args.placeholders).collect(),
        balloon: args.balloon,
        user: args.uid.zip(args.gid),
        jailed: args.jail,
        confine: match (args.no_confine, args.no_seccomp, args.confine_selftest) {
            (true, _, _) => Confine::Off,
            (_, true, _) => Confine::NoSeccomp,
            (_, _, true) => Confine::SelfTest,
            _ => Confine::Full,
        },
        api_sock: args.api_sock,
        snapshot_to: args.snapshot_to,
        restore_from: args.restore,
    };
    match isola_vmm::run(&config, start) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("isola-vmm: error: {e}");
            ExitCode::from(1)
        }
    }
}
