//! `isola-agent`:
//!   (no arguments, as PID 1)          the guest's /init and agent, on vsock
//!   init-helper CONFIG                the per-process helper (see helper.rs)
//!   --unix PATH [--state-dir D] [--cgroup-root C]
//!                                     the agent on a host, for tests

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use isola_protocol::READY_MARKER;

use isola_guest_agent::agent::{Agent, AgentConfig};
use isola_guest_agent::{boot_timer, helper, init, reaper::Reaper, server, switch_root, syscall::Linux};

/// The line the host waits for: userspace is up (and, as agent, listening).
/// On the kernel command line: print the marker and power off (boot benchmarks).
const ONESHOT_FLAG: &str = "isola.oneshot";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("init-helper") {
        match args.get(2) {
            Some(cfg) => helper::run(cfg),
            None => {
                eprintln!("isola-agent: init-helper needs a config path");
                std::process::exit(2)
            }
        }
    }
    if std::process::id() == 1 {
        guest_main()
    } else {
        host_main(&args)
    }
}

fn exe() -> PathBuf {
    std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("/init"))
}

fn guest_main() -> ! {
    if std::env::var_os(switch_root::SWITCHED_ENV).is_none() {
        if let Err(e) = switch_root::switch(&Linux) {
            eprintln!("isola-init: cannot leave the initramfs root ({e}); containers will fail to pivot_root");
        }
    }
    if let Err(e) = init::mount_early(&Linux) {
        eprintln!("isola-init: {e}");
    }
    if let Err(e) = boot_timer::signal_boot_timer() {
        eprintln!("isola-init: boot timer: {e}");
    }
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let uptime = uptime.split(' ').next().unwrap_or("?").to_string();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.split_whitespace().any(|w| w == ONESHOT_FLAG) {
        println!("{READY_MARKER} uptime={uptime}s");
        let _ = std::io::stdout().flush();
        power_off();
    }
    // SAFETY: PR_SET_CHILD_SUBREAPER takes plain integers (redundant for PID 1, harmless).
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let reaper = Reaper::start();
    let cfg = AgentConfig {
        state_dir: "/run/isola".into(),
        cgroup_root: "/sys/fs/cgroup/isola".into(),
        helper_exe: exe(),
        is_init: true,
    };
    let agent = Arc::new(Agent::new(cfg, reaper));
    match server::listen_vsock(isola_protocol::AGENT_PORT) {
        Ok(l) => {
            println!(
                "{} uptime={uptime}s {}{}",
                isola_protocol::READY_MARKER,
                isola_protocol::READY_AGENT_FIELD,
                isola_protocol::AGENT_PORT
            );
            let _ = std::io::stdout().flush();
            server::serve(agent, l)
        }
        Err(e) => eprintln!("isola-agent: cannot listen on vsock: {e}"),
    }
    power_off()
}

fn host_main(args: &[String]) -> ! {
    let mut unix = None;
    let mut state_dir = PathBuf::from("/run/isola-agent");
    let mut cgroup_root = PathBuf::from("/sys/fs/cgroup/isola-agent");
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--unix" => unix = Some(PathBuf::from(val())),
            "--state-dir" => state_dir = val().into(),
            "--cgroup-root" => cgroup_root = val().into(),
            other => {
                eprintln!("isola-agent: unknown argument {other:?} (see --unix, --state-dir, --cgroup-root)");
                std::process::exit(2)
            }
        }
    }
    let Some(path) = unix else {
        eprintln!("isola-agent: not PID 1: pass --unix PATH to serve on a unix socket");
        std::process::exit(2)
    };
    // SAFETY: PR_SET_CHILD_SUBREAPER takes plain integers; container processes orphaned
    // by their helpers must come back to us to be reaped.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let reaper = Reaper::start();
    let _ = std::fs::remove_file(&path);
    let listener = match std::os::unix::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("isola-agent: cannot listen on {}: {e}", path.display());
            std::process::exit(1)
        }
    };
    let agent = Arc::new(Agent::new(AgentConfig { state_dir, cgroup_root, helper_exe: exe(), is_init: false }, reaper));
    println!("{READY_MARKER} agent=unix:{}", path.display());
    let _ = std::io::stdout().flush();
    server::serve(agent, server::Listener::Unix(listener))
}

/// Ends the VM with a reset, which isola-vmm (i8042) and QEMU (-no-reboot) turn into exit.
fn power_off() -> ! {
    // The console's last lines (the ready marker among them) may still sit in the
    // tty's buffer; a reset now would drop them.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    for fd in [std::io::stdout().as_fd(), std::io::stderr().as_fd()] {
        let _ = nix::sys::termios::tcdrain(fd);
    }
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // reboot(2) returns only on failure; PID 1 must never exit.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
