//! `isola-runtime`: the OCI runtime command line (runc's), for callers that take a
//! runtime binary rather than a containerd shim: Docker's `--runtime`, podman's
//! `--runtime`, containerd's runc shim with `BinaryName`. Every container gets its own
//! microVM; the host process the caller waits on is the container's keeper.

mod cli;
mod console;
mod control;
mod error;
mod exec_cmd;
mod globals;
mod hooks;
mod info_cmd;
mod input;
mod keeper;
mod keeper_exec;
mod keeper_state;
mod lifecycle;
mod logfile;
mod relay;
mod spawn;
mod state;

use clap::Parser;

use cli::{Cli, Cmd};
use globals::{Globals, OCI_VERSION};

fn exit_as(code: i32) -> ! {
    // A process killed by a signal ends the same way, so the caller sees that signal.
    if (129..=128 + 31).contains(&code) {
        let sig = code - 128;
        // SAFETY: plain libc calls on our own process: no core file, default action, raise.
        unsafe {
            let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
    }
    std::process::exit(code)
}

fn start_logging(g: &Globals) {
    logfile::init(g.log.as_deref(), g.log_format == "json", g.debug);
    // The keeper's stderr is nobody's: a panic goes to the log the caller reads.
    std::panic::set_hook(Box::new(|info| log::error!("isola-runtime panicked: {info}")));
}

fn main() {
    // The task engine's background work, in detached copies of this binary: a stand-in
    // per process ([`isola_task::standin`]) and the maker of a missing template.
    isola_sandbox::background::run_if(isola_task::standin::serve);
    isola_sandbox::background::run_if(isola_task::template_maker::serve);
    // A container's keeper and an exec's relay: this binary again, detached, with the
    // caller's global flags.
    isola_sandbox::background::run_if(|j: keeper::KeeperJob| {
        start_logging(&j.globals);
        // A container killed by a signal ends its keeper by the same signal.
        exit_as(keeper::run(j))
    });
    isola_sandbox::background::run_if(|j: exec_cmd::RelayJob| {
        start_logging(&j.globals);
        exit_as(exec_cmd::relay_main(j))
    });
    let cli = Cli::parse();
    let g =
        Globals { root: cli.root.clone(), log: cli.log.clone(), log_format: cli.log_format.clone(), debug: cli.debug };
    start_logging(&g);
    if cli.version {
        println!("isola-runtime version {}", env!("CARGO_PKG_VERSION"));
        println!("commit: isola-{}", env!("CARGO_PKG_VERSION"));
        println!("spec: {OCI_VERSION}");
        return;
    }
    let Some(cmd) = cli.cmd else {
        eprintln!("isola-runtime: a command is needed (see --help)");
        std::process::exit(1)
    };
    match dispatch(&g, cmd) {
        Ok(code) => exit_as(code),
        Err(e) => {
            log::error!("{e:#}");
            if g.log.is_some() {
                eprintln!("isola-runtime: {e:#}");
            }
            std::process::exit(1)
        }
    }
}

fn dispatch(g: &Globals, cmd: Cmd) -> anyhow::Result<i32> {
    Ok(match cmd {
        Cmd::Create(a) => {
            // Its keeper is left to the caller's subreaper.
            std::mem::forget(lifecycle::create(g, &a)?);
            0
        }
        Cmd::Run { create, detach, keep } => lifecycle::run(g, &create, detach, keep)?,
        Cmd::Start { id } => lifecycle::start(g, &id).map(|_| 0)?,
        Cmd::State { id } => lifecycle::state(g, &id).map(|_| 0)?,
        Cmd::Kill { all, id, signal } => lifecycle::kill(g, &id, signal.as_deref(), all).map(|_| 0)?,
        Cmd::Delete { force, id } => lifecycle::delete(g, &id, force).map(|_| 0)?,
        Cmd::Pause { id } => lifecycle::pause(g, &id, true).map(|_| 0)?,
        Cmd::Resume { id } => lifecycle::pause(g, &id, false).map(|_| 0)?,
        Cmd::Exec(a) => exec_cmd::exec(g, &a)?,
        Cmd::Ps { format, id, ps_args } => info_cmd::ps(g, &id, &format, &ps_args).map(|_| 0)?,
        Cmd::List { format, quiet } => info_cmd::list(g, &format, quiet).map(|_| 0)?,
        Cmd::Events { stats, interval, id } => info_cmd::events(g, &id, stats, &interval).map(|_| 0)?,
        Cmd::Update(a) => info_cmd::update(g, &a).map(|_| 0)?,
        Cmd::Features => info_cmd::features().map(|_| 0)?,
        Cmd::Spec { bundle, rootless } => info_cmd::spec(&bundle, rootless).map(|_| 0)?,
    })
}
