//! The cleaner of a foreground `isola run`: a small process that outlives the CLI only
//! to remove what a killed CLI (kill -9) left, at once rather than at the next
//! command. It waits for EOF on a pipe only the CLI holds; then, if the sandbox is
//! still there and was created by that CLI, it stops and removes it.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::Args;
use isola_sandbox::state::{Creator, SandboxState};

#[derive(Args, Debug)]
pub struct ReapArgs {
    #[arg(long)]
    state_root: PathBuf,
    #[arg(long)]
    name: String,
}

/// Started before the sandbox; the returned pipe end must live as long as the CLI.
pub fn spawn(state_root: &Path, name: &str) -> Option<std::process::ChildStdin> {
    let exe = std::env::current_exe().ok()?;
    let child = Command::new(exe)
        .arg("__reap")
        .arg("--state-root")
        .arg(state_root)
        .arg("--name")
        .arg(name)
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

pub fn reap(a: ReapArgs) -> ExitCode {
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
    ExitCode::SUCCESS
}
