//! create, start, run, kill, delete, pause, resume, state: the container's life.

use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;

use crate::cli::CreateArgs;
use crate::control::{self, Request};
use crate::error::{io, RuntimeError};
use crate::globals::Globals;
use crate::state::{Dir, Record};

/// Makes the container: the keeper boots its VM and waits for `start`. The keeper is
/// returned so `run` can wait for it; `create` lets it go (its caller's subreaper adopts it).
pub fn create(g: &Globals, a: &CreateArgs) -> Result<std::process::Child, RuntimeError> {
    let dir = Dir::new(&g.root, &a.id)?;
    // As runc's: no other user reads a container's spec (its env holds secrets) or state.
    isola_sandbox::files::private_dir_all(&g.root, 0o700).map_err(io("creating", &g.root))?;
    let _lock = dir.lock()?;
    if dir.exists() {
        return Err(RuntimeError::Exists(a.id.clone()));
    }
    let made = (|| {
        let bundle = std::path::absolute(&a.bundle).map_err(io("resolving", &a.bundle))?;
        let config = bundle.join("config.json");
        let spec = isola_task::spec::load(&config).map_err(|why| RuntimeError::Spec { path: config.clone(), why })?;
        let terminal = spec.process().as_ref().is_some_and(|p| p.terminal().unwrap_or(false));
        if terminal && a.console_socket.is_none() {
            return Err(RuntimeError::Invalid(
                "cannot allocate tty if runc will detach without setting console socket".into(),
            ));
        }
        if !terminal && a.console_socket.is_some() {
            return Err(RuntimeError::Invalid(
                "cannot use console socket if runc will not detach or allocate tty".into(),
            ));
        }
        let console_socket = crate::console::absolute_socket(a.console_socket.as_deref())?;
        let job =
            crate::keeper::KeeperJob { globals: g.clone(), id: a.id.clone(), bundle: bundle.clone(), console_socket };
        let cmd = crate::spawn::this(&job);
        let (child, pid) = crate::spawn::spawn_ready(cmd, "container's keeper")?;
        if let Some(p) = &a.pid_file {
            crate::spawn::write_pid_file(p, pid)?;
        }
        Ok(child)
    })();
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&dir.path);
    }
    made
}

fn live(g: &Globals, id: &str) -> Result<(Dir, Record), RuntimeError> {
    let dir = Dir::new(&g.root, id)?;
    let r = dir.load()?;
    Ok((dir, r))
}

pub fn start(g: &Globals, id: &str) -> Result<(), RuntimeError> {
    let (dir, r) = live(g, id)?;
    match r.live_status().as_str() {
        "created" => control::call(&dir.socket(), id, &Request::Start).map(|_| ()),
        "stopped" => Err(RuntimeError::Invalid("cannot start a container that has stopped".into())),
        _ => Err(RuntimeError::Invalid("cannot start an already running container".into())),
    }
}

pub fn state(g: &Globals, id: &str) -> Result<(), RuntimeError> {
    let (_, r) = live(g, id)?;
    println!("{}", serde_json::to_string_pretty(&r.oci_state()).unwrap_or_default());
    Ok(())
}

/// A signal as runc takes it ([`isola_sandbox::signal::parse`]).
pub fn parse_signal(s: &str) -> Result<u32, RuntimeError> {
    isola_sandbox::signal::parse(s).map_err(|e| RuntimeError::Invalid(e.to_string()))
}

pub fn kill(g: &Globals, id: &str, signal: Option<&str>, all: bool) -> Result<(), RuntimeError> {
    let signal = parse_signal(signal.unwrap_or("SIGTERM"))?;
    let (dir, r) = live(g, id)?;
    if !r.keeper_alive() {
        return Err(RuntimeError::Invalid("container not running".into()));
    }
    control::call(&dir.socket(), id, &Request::Kill { exec: None, signal, all }).map(|_| ()).map_err(|e| match e {
        // containerd's runc shim takes "not running" for an exit it raced.
        RuntimeError::Keeper(m) if m.contains("already finished") => {
            RuntimeError::Invalid("container not running".into())
        }
        e => e,
    })
}

pub fn pause(g: &Globals, id: &str, pause: bool) -> Result<(), RuntimeError> {
    let (dir, r) = live(g, id)?;
    if !r.keeper_alive() {
        return Err(RuntimeError::WrongState {
            verb: if pause { "pause" } else { "resume" },
            id: id.into(),
            status: "stopped".into(),
        });
    }
    control::call(&dir.socket(), id, if pause { &Request::Pause } else { &Request::Resume }).map(|_| ())
}

/// Waits (bounded) for the keeper to be gone.
fn await_gone(r: &Record, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while r.keeper_alive() {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

pub fn delete(g: &Globals, id: &str, force: bool) -> Result<(), RuntimeError> {
    let dir = Dir::new(&g.root, id)?;
    let _lock = if dir.path.exists() { Some(dir.lock()?) } else { None };
    let r = match dir.load() {
        // As runc's: a forced delete of what is not there (any more) succeeds.
        Err(RuntimeError::NotFound(_)) if force => {
            let _ = std::fs::remove_dir_all(&dir.path);
            return Ok(());
        }
        r => r?,
    };
    if r.keeper_alive() {
        let status = r.live_status();
        if matches!(status.as_str(), "running" | "paused") && !force {
            return Err(RuntimeError::NotStopped(id.into(), status));
        }
        // A created container's delete kills its (never started) process, as runc's does.
        let _ = control::call(&dir.socket(), id, &Request::Kill { exec: None, signal: 9, all: true });
        if !await_gone(&r, Duration::from_secs(20)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(r.pid), nix::sys::signal::Signal::SIGKILL);
            await_gone(&r, Duration::from_secs(5));
        }
    }
    poststop(&r);
    // What a killed keeper left: the VM's processes, taps, mounts, cgroup, directory
    // (the bundle copy's record names the VM, as a dead shim's bundle does).
    isola_task::bundle::cleanup_bundle(&dir.bundle_copy(), id);
    std::fs::remove_dir_all(&dir.path).map_err(io("removing", &dir.path))
}

/// The poststop hooks of the caller's spec (where its bundle still is).
fn poststop(r: &Record) {
    let Ok(spec) = Spec::load(r.bundle.join("config.json")) else { return };
    let hooks = spec.hooks().clone().unwrap_or_default();
    let st = crate::keeper::hook_state(r, "stopped");
    crate::hooks::run_each_warning("poststop", hooks.poststop().as_deref().unwrap_or(&[]), &st);
}

/// `run`: create, start, and (unless detached) wait and delete; the container's status.
pub fn run(g: &Globals, a: &CreateArgs, detach: bool, keep: bool) -> Result<i32, RuntimeError> {
    let mut keeper = create(g, a)?;
    if let Err(e) = start(g, &a.id) {
        let _ = delete(g, &a.id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let status = keeper.wait().map_err(io("waiting for", Path::new(&a.id)))?;
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    if !keep {
        delete(g, &a.id, true)?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_signal_is_an_invalid_request() {
        assert!(matches!(parse_signal("NOPE"), Err(RuntimeError::Invalid(m)) if m.contains("NOPE")));
    }

    #[test]
    fn a_missing_container_is_reported_as_runc_says_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let g = Globals { root: tmp.path().into(), log: None, log_format: "text".into(), debug: false };
        for e in [start(&g, "nope").expect_err("start"), delete(&g, "nope", false).expect_err("delete")] {
            assert_eq!(e.to_string(), "container \"nope\" does not exist");
        }
        delete(&g, "nope", true).expect("a forced delete of nothing succeeds");
        assert!(matches!(kill(&g, "../x", None, false), Err(RuntimeError::BadId(..))));
    }
}
