//! `isola run` and `isola exec`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use isola_sandbox::options::DiskAttach;
use isola_sandbox::placement::{vcpus_for, Host, Request, Vcpus};
use isola_sandbox::sandbox::{Sandbox, SandboxOptions};
use isola_sandbox::seccomp::Seccomp;
use isola_sandbox::spec::{self, ContainerOptions};
use isola_sandbox::stdio::Bridges;
use isola_sandbox::volume::Volume;
use isola_sandbox::{ExitStatus, HypervisorKind, ProcessHandle, Rootfs};

/// The container in a single-container sandbox is named after the sandbox.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Root filesystem directory of the container (shared read-only over virtio-fs, or
    /// copied into the sandbox when the backend has no virtio-fs). Without it, the
    /// first argument is an image (pulled when not in the store).
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// Network: bridge (isola0 with NAT, an address per sandbox), none (loopback
    /// only), or auto (bridge where the backend has a network device).
    #[arg(long, default_value = "auto")]
    network: isola_sandbox::sandbox::NetworkMode,
    /// Let the sandbox reach a private or LAN network (a.b.c.d/n; repeatable): on the
    /// bridge, private ranges (RFC 1918, CGNAT) and the host's LAN are closed by
    /// default, the internet and the DNS servers it is given are not.
    #[arg(long = "network-allow", value_name = "CIDR")]
    network_allow: Vec<isola_sandbox::netfilter::Cidr>,
    /// Publish a container port on the host: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]
    /// (repeatable; on every host address, 127.0.0.1 included, unless HOST_IP is given).
    #[arg(short = 'p', long = "publish")]
    publish: Vec<isola_sandbox::backend::ports::PortSpec>,
    /// Bind a host path into the container: HOST:GUEST[:ro] (over virtio-fs).
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<Volume>,
    /// Sandbox name (default: a random one).
    #[arg(long)]
    name: Option<String>,
    /// Remove the sandbox when the command ends (always the case without -d).
    #[arg(long)]
    rm: bool,
    /// Keep stdin open and attach it.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Run in the background; print the sandbox name.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Environment variables, KEY=VALUE.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Replace the image's ENTRYPOINT (its CMD is dropped too, as with Docker); ""
    /// for none. Only with an image.
    #[arg(long, conflicts_with = "rootfs")]
    entrypoint: Option<String>,
    /// Working directory in the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// User id (and optionally :gid) to run as.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Container memory limit as Docker writes it (512m, 1g; a plain number is MiB);
    /// the VM gets this plus headroom. 4 MiB to 1 TiB.
    #[arg(short = 'm', long, value_parser = crate::sizes::parse_memory_mib)]
    memory: Option<u64>,
    /// CPU limit for the container (e.g. 0.5); the VM gets that many vCPUs, rounded up
    /// (at most 255).
    #[arg(long, value_parser = crate::sizes::parse_cpus)]
    cpus: Option<f64>,
    /// Security options as Docker takes them: `seccomp=unconfined` (no filter; for
    /// debugging, unsafe) or `seccomp=PROFILE.json`. The default filter refuses, among
    /// others, vsock sockets, module loading, kexec, BPF, mounts and new namespaces.
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Add a Linux capability to the container's default set (e.g. NET_ADMIN). It
    /// applies inside the microVM only: the host never grants it.
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Mount the container's root filesystem read-only (volumes keep their own mode).
    #[arg(long = "read-only")]
    read_only: bool,
    /// Backend: isola-vmm or qemu (default: by host).
    #[arg(long)]
    hypervisor: Option<HypervisorKind>,
    /// Boot a sandbox even when the warm pool (`isola pool fill`) has one for this
    /// configuration.
    #[arg(long)]
    no_pool: bool,
    /// Boot the guest even when a template (`isola template`) could be restored, and
    /// make none.
    #[arg(long)]
    no_template: bool,
    /// No balloon: memory the guest frees stays with its VM until it ends, and
    /// `isola update -m` changes only the container's cgroup.
    #[arg(long)]
    no_balloon: bool,
    /// How an IMAGE's root filesystem reaches the guest: `disk` (a read-only erofs
    /// image on virtio-blk, shared by every sandbox of the image; the default) or
    /// `share` (the unpacked directory over virtio-fs).
    #[arg(long, default_value = "disk", value_parser = ["disk", "share"])]
    image_fs: String,
    /// Seconds to wait for the sandbox to boot.
    #[arg(long, default_value_t = 60)]
    boot_timeout: u64,
    /// IMAGE [COMMAND…] (or, with --rootfs, COMMAND…; `--` before it is fine).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn random_name() -> String {
    format!("isola-{}", isola_sandbox::names::random_hex(4))
}

fn parse_user(u: &str) -> anyhow::Result<(u32, Option<u32>)> {
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let uid = uid.parse().with_context(|| format!("--user {u:?}: uid must be a number"))?;
    let gid = gid.map(|g| g.parse().with_context(|| format!("--user {u:?}: gid must be a number"))).transpose()?;
    Ok((uid, gid))
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let name = a.name.clone().unwrap_or_else(random_name);
    let (uid, gid) = match &a.user {
        Some(u) => {
            let (uid, gid) = parse_user(u)?;
            (Some(uid), gid.or(Some(uid)))
        }
        None => (None, None),
    };
    // The rootfs and the process: a directory and its command, or an image's config
    // merged with what the user gave.
    let (rootfs, disk, args, env, cwd, (uid, gid)) = match &a.rootfs {
        Some(dir) => (dir.clone(), None, a.command.clone(), a.env.clone(), a.workdir.clone(), (uid, gid)),
        None => {
            let (image, cmd) = a.command.split_first().context("give an IMAGE (or --rootfs DIR) and a command")?;
            let (store, rec) = crate::image_cmd::resolve(image)?;
            let cfg = store.config(&rec)?;
            let s = isola_image::manifest::run_settings(
                &cfg,
                cmd,
                a.entrypoint.as_deref(),
                &a.env,
                a.workdir.as_deref(),
                a.user.as_deref(),
            );
            anyhow::ensure!(!s.args.is_empty(), "image {image} has no command: give one");
            let ids = match (&a.user, &s.user) {
                (None, Some(u)) => {
                    let (uid, gid) = parse_user(u).with_context(|| format!("the image's user {u:?}"))?;
                    (Some(uid), gid.or(Some(uid)))
                }
                _ => (uid, gid),
            };
            let disk = match a.image_fs.as_str() {
                "disk" => crate::image_cmd::image_disk(&store, &rec)?,
                _ => None,
            };
            (store.rootfs(&rec), disk, s.args, s.env, s.cwd, ids)
        }
    };
    anyhow::ensure!(!args.is_empty(), "no command given");
    let seccomp = seccomp_choice(&a.security_opt)?;
    if seccomp == Seccomp::Unconfined {
        eprintln!("isola: warning: seccomp=unconfined: the container runs without a syscall filter (unsafe)");
    }
    let opts = ContainerOptions {
        seccomp,
        cap_add: a.cap_add.clone(),
        read_only: a.read_only,
        args,
        env,
        cwd,
        terminal: a.tty,
        memory_bytes: a.memory.map(|m| m << 20),
        cpus: a.cpus,
        hostname: Some(name.clone()),
        uid,
        gid,
    };
    let spec = spec::spec(&opts)?;
    anyhow::ensure!(rootfs.is_dir(), "rootfs {} is not a directory", rootfs.display());
    let host = Host::load(None)?;
    let kernel = host.config.kernel();
    anyhow::ensure!(
        kernel.is_file(),
        "guest kernel {} is missing (scripts/setup.sh, or `kernel` in {})",
        kernel.display(),
        isola_sandbox::config::path().display()
    );
    let vcpus = a.cpus.map(vcpus_for);
    let req = Request {
        memory_mib: a.memory,
        vcpus: vcpus.map(Vcpus::Exactly),
        hypervisor: a.hypervisor,
        network: a.network,
        hostname: Some(name.clone()),
        boot_timeout: Duration::from_secs(a.boot_timeout),
        tie_to_parent: !a.detach,
        templates: !a.no_template,
        network_allow: a.network_allow.clone(),
        disks: disk
            .iter()
            .map(|d| DiskAttach {
                path: d.path.clone(),
                serial: d.serial.clone(),
                fstype: isola_image::disk::FSTYPE.into(),
                read_only: true,
            })
            .collect(),
        shared_fs: disk.is_none() || !a.volumes.is_empty(),
        balloon: !a.no_balloon,
        ..Request::new(name.clone())
    };
    let placed = host.place(&req);
    let sopts = &placed.options;
    // A foreground run killed with -9 is cleaned up at once by this helper.
    let _reaper = (!a.detach).then(|| crate::reap_cmd::spawn(&sopts.state_root, &name)).flatten();
    let pooled = crate::pool_cmd::PoolConfig { memory: a.memory, vcpus, network: a.network, hypervisor: a.hypervisor };
    // A warm-pool member's rules were made for the default egress.
    let poolable = !a.no_pool && a.network_allow.is_empty();
    let mut sb = match poolable.then(|| claim(sopts, &pooled, &name)).transpose()?.flatten() {
        Some(sb) => sb,
        None => {
            let sb = placed.start().with_context(|| format!("starting sandbox {name}"))?;
            // Booted cold on isola-vmm: the next run of this configuration restores.
            if placed.wants_template(&sb) {
                // With the image on a disk and nothing shared: a template of that shape.
                crate::template_cmd::warm_in_background(&pooled, !sopts.shared_fs);
            }
            sb
        }
    };
    let me = std::env::current_exe().context("finding the isola binary (for the port forwarder)")?;
    sb.publish(&a.publish, &me, sopts)?;
    // The image's disk when the sandbox has it (a pooled or restored one has a share).
    let root = match &disk {
        Some(d) if sb.has_disk(&d.serial) => {
            Rootfs::Disk { serial: &d.serial, fstype: isola_image::disk::FSTYPE, in_place: false }
        }
        _ => Rootfs::Dir(&rootfs),
    };
    let c = sb.create_container(&name, spec, root, &a.volumes);
    let c = cause(&mut sb, c)?;
    sb.set_container(&name)?;
    if a.detach {
        cause(&mut sb, c.start())?;
        println!("{name}");
        sb.detach();
        return Ok(ExitCode::SUCCESS);
    }
    let bridges = Bridges::to_stdio(cause(&mut sb, c.attach(a.tty))?, a.interactive)?;
    let raw = a.tty.then(RawTerminal::enter).flatten();
    cause(&mut sb, c.start())?;
    let status = match wait_watching(&mut sb, c.init()) {
        Ok(s) => s,
        Err(e) => {
            drop(raw);
            sb.stop();
            return Err(e);
        }
    };
    if status.oom_killed {
        eprintln!("isola: container {name} was killed: out of memory");
    }
    bridges.finish();
    drop(raw);
    sb.stop();
    Ok(exit_code(status.code))
}

/// A sandbox from the warm pool for this configuration, if it has one; the pool is
/// then refilled in the background.
fn claim(sopts: &SandboxOptions, c: &crate::pool_cmd::PoolConfig, name: &str) -> anyhow::Result<Option<Sandbox>> {
    use isola_sandbox::pool::{self, PoolError, PoolKey};
    let key = PoolKey::new(sopts.hypervisor, &sopts.boot, sopts.network);
    match pool::claim(&sopts.state_root, &key, name) {
        Ok(Some((dir, st))) => {
            crate::pool_cmd::refill_in_background(c, &sopts.state_root, &key);
            Ok(Some(Sandbox::adopt(dir, st)))
        }
        Ok(None) => Ok(None),
        Err(e @ (PoolError::Exists(_) | PoolError::BadId(_))) => Err(e.into()),
        Err(e) => {
            eprintln!("isola: warning: warm pool: {e}; booting a new sandbox");
            Ok(None)
        }
    }
}

/// A failed call's real cause when a process of the sandbox died (the watchdog then
/// ended the rest, which is what made the call fail).
fn cause<T, E: Into<anyhow::Error>>(sb: &mut Sandbox, r: Result<T, E>) -> anyhow::Result<T> {
    r.map_err(|e| match sb.check_processes() {
        Err(died) => died.into(),
        Ok(()) => e.into(),
    })
}

/// Waits for the container while watching the sandbox's processes: if the VMM or a
/// helper (virtiofsd, the vsock daemon) dies, that is the error, not a hang.
fn wait_watching(sb: &mut Sandbox, init: ProcessHandle) -> anyhow::Result<ExitStatus> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(init.wait());
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => return Ok(r?),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => sb.check_processes()?,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => anyhow::bail!("lost the wait for the container"),
        }
    }
}

/// The seccomp choice among `--security-opt` values; other options are refused by name.
fn seccomp_choice(opts: &[String]) -> anyhow::Result<Seccomp> {
    let mut choice = Seccomp::Default;
    for o in opts {
        match o.split_once('=') {
            Some(("seccomp", v)) => choice = Seccomp::parse(v)?,
            _ => anyhow::bail!("--security-opt {o:?}: isola takes seccomp=unconfined or seccomp=PROFILE.json"),
        }
    }
    Ok(choice)
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}

/// Puts our terminal in raw mode while a container's terminal is attached.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open and attach it.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// The sandbox.
    sandbox: String,
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn exec(a: ExecArgs) -> anyhow::Result<ExitCode> {
    let (dir, st) = crate::manage_cmd::find(&a.sandbox)?;
    let id = crate::manage_cmd::container_id(&a.sandbox, &st)?;
    let process = spec::process(&ContainerOptions {
        args: a.command.clone(),
        env: a.env.clone(),
        cwd: a.workdir.clone(),
        terminal: a.tty,
        ..Default::default()
    })?;
    let exec_id = format!("exec-{}", std::process::id());
    let c = st.container(&id, Duration::from_secs(30));
    let p = c.exec(&exec_id, process).with_context(|| format!("exec in the sandbox in {}", dir.display()))?;
    let bridges = Bridges::to_stdio(p.attach(a.tty)?, a.interactive)?;
    let raw = a.tty.then(RawTerminal::enter).flatten();
    p.start()?;
    let status = p.wait()?;
    bridges.finish();
    drop(raw);
    Ok(exit_code(status.code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse() {
        assert_eq!(parse_user("1000").expect("uid"), (1000, None));
        assert_eq!(parse_user("1000:50").expect("uid:gid"), (1000, Some(50)));
        assert!(parse_user("bob").is_err());
        assert!(random_name().starts_with("isola-"));
        assert_eq!(seccomp_choice(&[]).expect("default"), Seccomp::Default);
        assert_eq!(seccomp_choice(&["seccomp=unconfined".into()]).expect("off"), Seccomp::Unconfined);
        let e = seccomp_choice(&["apparmor=x".into()]).expect_err("unknown");
        assert!(e.to_string().contains("apparmor=x"), "{e}");
    }
}
