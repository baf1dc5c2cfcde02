//! `exec`: a process in a running container. With --detach a relay process stays
//! (its pid in --pid-file) and this command returns once the process started;
//! without, this command is the relay and exits with the process's status.

use std::path::PathBuf;

use oci_spec::runtime::{Process, Spec};

use crate::cli::ExecArgs;
use crate::error::{io, RuntimeError};
use crate::globals::Globals;
use crate::keeper::Ready;
use crate::relay::{self, RelayArgs};
use crate::state::Dir;

/// The process to run: `--process` as given, or the container's own process with the
/// command and the flags applied (as runc builds it).
pub fn process(a: &ExecArgs, base: Option<&Process>) -> Result<serde_json::Value, RuntimeError> {
    if let Some(p) = &a.process {
        let v: Process = crate::input::read_json(p)?;
        return serde_json::to_value(v).map_err(|e| RuntimeError::Invalid(e.to_string()));
    }
    if a.command.is_empty() {
        return Err(RuntimeError::Invalid("exec needs a command (or --process)".into()));
    }
    let mut p = base.cloned().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.into());
    }
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &a.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(u) = &a.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let parse =
            |s: &str| s.parse::<u32>().map_err(|_| RuntimeError::Invalid(format!("--user {u:?}: use uid[:gid]")));
        let mut user = p.user().clone();
        user.set_uid(parse(uid)?);
        user.set_gid(parse(gid)?);
        if !a.additional_gids.is_empty() {
            user.set_additional_gids(Some(a.additional_gids.clone()));
        }
        p.set_user(user);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    serde_json::to_value(p).map_err(|e| RuntimeError::Invalid(e.to_string()))
}

fn exec_id() -> String {
    format!("exec-{}", isola_sandbox::names::random_hex(6))
}

pub fn exec(g: &Globals, a: &ExecArgs) -> Result<i32, RuntimeError> {
    let dir = Dir::new(&g.root, &a.id)?;
    let r = dir.load()?;
    if r.live_status() != "running" {
        return Err(RuntimeError::Invalid(format!("cannot exec in a {} container", r.live_status())));
    }
    let base = Spec::load(dir.bundle_copy().join("config.json")).ok().and_then(|s| s.process().clone());
    let process = process(a, base.as_ref())?;
    let terminal = process.get("terminal").and_then(|t| t.as_bool()).unwrap_or(false);
    if terminal && a.detach && a.console_socket.is_none() {
        return Err(RuntimeError::Invalid(
            "cannot allocate tty if runc will detach without setting console socket".into(),
        ));
    }
    let exec = exec_id();
    if !a.detach {
        if let Some(p) = &a.pid_file {
            crate::spawn::write_pid_file(p, std::process::id() as i32)?;
        }
        let args = RelayArgs {
            socket: dir.socket(),
            id: a.id.clone(),
            exec,
            process,
            console_socket: a.console_socket.clone(),
        };
        return Ok(relay::run(args, Ready::none()));
    }
    // The relay reads the process from a private file (it may outlive the caller's).
    let file = dir.path.join(format!("{exec}.process.json"));
    std::fs::write(&file, process.to_string()).map_err(io("writing", &file))?;
    let console_socket = crate::console::absolute_socket(a.console_socket.as_deref())?;
    let job =
        RelayJob { globals: g.clone(), id: a.id.clone(), exec: exec.clone(), process: file.clone(), console_socket };
    let cmd = crate::spawn::this(&job);
    let spawned = crate::spawn::spawn_ready(cmd, "exec relay");
    let _ = std::fs::remove_file(&file);
    let (_child, pid) = spawned?;
    if let Some(p) = &a.pid_file {
        crate::spawn::write_pid_file(p, pid)?;
    }
    Ok(0)
}

/// A detached exec relay's job ([`isola_sandbox::background`]): the process is read
/// from a private file, which may outlive the caller.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RelayJob {
    pub globals: Globals,
    pub id: String,
    pub exec: String,
    pub process: PathBuf,
    pub console_socket: Option<PathBuf>,
}

impl isola_sandbox::background::Job for RelayJob {
    const NAME: &'static str = "relay";
}

/// The detached relay's life.
pub fn relay_main(j: RelayJob) -> i32 {
    let RelayJob { globals: g, id, exec, process, console_socket: console } = j;
    let mut ready = Ready::from_fd();
    let dir = match Dir::new(&g.root, &id) {
        Ok(d) => d,
        Err(e) => {
            ready.send(&format!("error {e}"));
            return 1;
        }
    };
    let process = match std::fs::read_to_string(&process).map(|t| serde_json::from_str(&t)) {
        Ok(Ok(p)) => p,
        other => {
            ready.send(&format!("error reading {}: {other:?}", process.display()));
            return 1;
        }
    };
    relay::run(RelayArgs { socket: dir.socket(), id, exec, process, console_socket: console }, ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &[&str]) -> ExecArgs {
        let cli = crate::cli::Cli::try_parse_from(line).expect("parses");
        match cli.cmd {
            Some(crate::cli::Cmd::Exec(a)) => a,
            other => panic!("not exec: {other:?}"),
        }
    }

    #[test]
    fn exec_flags_apply_to_the_containers_process() {
        let a = args(&[
            "isola-runtime",
            "exec",
            "-t",
            "--cwd",
            "/tmp",
            "-e",
            "A=2",
            "-u",
            "1000:1001",
            "c1",
            "sh",
            "-c",
            "echo hi",
        ]);
        assert_eq!(a.id, "c1");
        let mut base = Process::default();
        base.set_env(Some(vec!["A=1".into(), "PATH=/bin".into()]));
        let p = process(&a, Some(&base)).expect("process");
        assert_eq!(p["args"], serde_json::json!(["sh", "-c", "echo hi"]));
        assert_eq!(p["cwd"], "/tmp");
        assert_eq!(p["terminal"], true);
        assert_eq!(p["user"]["uid"], 1000);
        assert_eq!(p["user"]["gid"], 1001);
        assert_eq!(p["env"], serde_json::json!(["PATH=/bin", "A=2"]), "replaced, not doubled");
    }

    #[test]
    fn a_process_file_is_taken_whole_and_bad_input_is_named() {
        let tmp = tempfile::tempdir().expect("tmp");
        let f = tmp.path().join("process.json");
        std::fs::write(&f, r#"{"args":["ls"],"cwd":"/","user":{"uid":0,"gid":0}}"#).expect("write");
        let a = args(&["isola-runtime", "exec", "--process", f.to_str().expect("utf8"), "--detach", "c1"]);
        assert_eq!(process(&a, None).expect("process")["args"], serde_json::json!(["ls"]));
        std::fs::write(&f, "{not json").expect("write");
        let e = process(&a, None).expect_err("bad json");
        assert!(e.to_string().contains("process.json"), "{e}");
        let none = args(&["isola-runtime", "exec", "c1"]);
        assert!(process(&none, None).is_err(), "no command");
        let bad_user = args(&["isola-runtime", "exec", "-u", "root", "c1", "id"]);
        assert!(process(&bad_user, None).expect_err("user").to_string().contains("uid[:gid]"));
    }
}
