//! Runs the host's network tools (`ip`, `iptables`, `tc`, `nsenter`) and reports their
//! stderr when they fail.

use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("`{cmd}` failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("cannot run {0}: {1} (install iproute2 and iptables)")]
    Spawn(String, std::io::Error),
}

/// Runs `cmd args…`; its stdout when it succeeds, its stderr in the error otherwise.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, CmdError> {
    let out = Command::new(cmd).args(args).output().map_err(|e| CmdError::Spawn(cmd.into(), e))?;
    if !out.status.success() {
        return Err(CmdError::Failed {
            cmd: format!("{cmd} {}", args.join(" ")),
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
    }
}
