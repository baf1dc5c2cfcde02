//! Runs the host's network tools (`ip`, `iptables`, `tc`, `nsenter`) and reports their
//! stderr when they fail.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("`{cmd}` failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("cannot run {0}: {1} (install iproute2, iptables and nftables)")]
    Spawn(String, std::io::Error),
}

/// Runs `cmd args…`; its stdout when it succeeds, its stderr in the error otherwise.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, CmdError> {
    let out = Command::new(cmd).args(args).output().map_err(|e| CmdError::Spawn(cmd.into(), e))?;
    finish(out, || format!("{cmd} {}", args.join(" ")))
}

/// Like [`run`], with `input` on the tool's stdin (`nft -f -`, `iptables-restore`).
pub fn run_with_input(cmd: &str, args: &[&str], input: &str) -> Result<String, CmdError> {
    let spawn = |e| CmdError::Spawn(cmd.into(), e);
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    finish(out, || format!("{cmd} {} <<< {input:?}", args.join(" ")))
}

/// The tool's stdout, or its stderr in an error naming the command line.
fn finish(out: std::process::Output, cmdline: impl FnOnce() -> String) -> Result<String, CmdError> {
    if !out.status.success() {
        return Err(CmdError::Failed {
            cmd: cmdline(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_failures_are_reported() {
        assert_eq!(run("sh", &["-c", "echo hi"]).expect("sh"), "hi\n");
        let e = run("sh", &["-c", "echo bad >&2; exit 1"]).expect_err("fails");
        assert!(e.to_string().contains("bad"), "{e}");
        assert!(matches!(run("isola-no-such-tool", &[]), Err(CmdError::Spawn(..))));
        assert_eq!(run_with_input("tr", &["a-z", "A-Z"], "hi").expect("tr"), "HI");
        let e = run_with_input("sh", &["-c", "cat >&2; exit 3"], "why").expect_err("fails");
        assert!(e.to_string().contains("why"), "{e}");
    }
}
