//! The cleaner of a foreground `isola run`: a small process that outlives the CLI only
//! to remove what a killed CLI (kill -9) left, at once rather than at the next
//! command. It waits for EOF on a pipe only the CLI holds; then, if the sandbox is
//! still there and was created by that CLI, it stops and removes it.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use isola_sandbox::background::{self, Job};
use isola_sandbox::state::{Creator, SandboxState};

/// The cleaner's job: the sandbox `name` under `state_root`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ReapJob {
    state_root: PathBuf,
    name: String,
}

impl Job for ReapJob {
    const NAME: &'static str = "reap";
}

/// Started before the sandbox; the returned pipe end must live as long as the CLI.
pub fn spawn(state_root: &Path, name: &str) -> Option<std::process::ChildStdin> {
    let exe = std::env::current_exe().ok()?;
    let job = ReapJob { state_root: state_root.to_path_buf(), name: name.to_string() };
    let child = background::command(exe, &job)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C for the terminal's group is the CLI's to handle.
        .process_group(0)
        .spawn();
    match child {
        Ok(mut c) => c.stdin.take(),
        Err(e) => {
            eprintln!("isola: warning: no cleaner for a killed run ({e}); the next isola command cleans up instead");
            None
        }
    }
}

pub fn reap(a: ReapJob) -> i32 {
    // The CLI that started us, as it is now (a later process with its pid differs).
    let parent = Creator::of(nix::unistd::getppid().as_raw());
    let mut sink = [0u8; 64];
    // EOF: the CLI is gone, however it ended.
    while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
    let dir = a.state_root.join(&a.name);
    if let Ok(st) = SandboxState::load(&dir) {
        // Only the sandbox that CLI created: never a later one with the same name.
        if parent.is_some() && st.creator == parent {
            isola_sandbox::sandbox::stop_by_state(&dir, &st);
        }
    }
    0
}
