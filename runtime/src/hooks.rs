//! OCI hooks, run on the host as runc runs them: the container's state on stdin,
//! `args[0]` as argv[0], the hook's env only, killed after its timeout. Docker's
//! network setup is one (`libnetwork-setkey`, a prestart hook): it moves the veth into
//! the namespace of the pid it is given, which is the keeper's.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::RuntimeError;

/// A hook without a timeout gets this long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Hooks that gate the container (createRuntime, prestart…): the first failure stops
/// the rest and fails the operation.
pub fn run_all(kind: &str, hooks: &[Hook], state: &serde_json::Value) -> Result<(), RuntimeError> {
    for h in hooks {
        run(kind, h, state)?;
    }
    Ok(())
}

/// Hooks after the fact (poststart, poststop): the runtime spec says a failure is a
/// warning and the remaining hooks still run. Each failure is logged and returned.
pub fn run_each_warning(kind: &str, hooks: &[Hook], state: &serde_json::Value) -> Vec<RuntimeError> {
    let failed: Vec<RuntimeError> = hooks.iter().filter_map(|h| run(kind, h, state).err()).collect();
    for e in &failed {
        log::warn!("{e}");
    }
    failed
}

fn run(kind: &str, h: &Hook, state: &serde_json::Value) -> Result<(), RuntimeError> {
    let name = format!("{kind} {}", h.path().display());
    let fail = |e: String| RuntimeError::Hook(name.clone(), e);
    let mut cmd = Command::new(h.path());
    let args = h.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in h.env().clone().unwrap_or_default() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state.to_string().as_bytes());
    }
    let timeout = h.timeout().and_then(|t| u64::try_from(t).ok()).map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let until = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut text = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = (&mut e).take(4096).read_to_string(&mut text);
                }
                return Err(fail(format!("{status}: {}", text.trim())));
            }
            Ok(None) if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("timed out after {timeout:?}")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn hook(args: &[&str], timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default().path("/bin/sh").args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.env(vec!["GREETING=hi".to_string()]).build().expect("hook")
    }

    #[test]
    fn a_hook_reads_the_state_and_sees_only_its_env() {
        let tmp = tempfile::tempdir().expect("tmp");
        let out = tmp.path().join("out");
        let script = format!("cat > {0}; echo \" $GREETING $HOME\" >> {0}", out.display());
        run_all("prestart", &[hook(&["sh", "-c", &script], None)], &serde_json::json!({"pid": 42})).expect("runs");
        let got = std::fs::read_to_string(&out).expect("out");
        assert!(got.starts_with("{\"pid\":42}"), "{got}");
        assert!(got.contains(" hi "), "its env: {got}");
        assert!(!got.contains("/root"), "not ours: {got}");
    }

    #[test]
    fn a_failing_poststart_hook_is_a_warning_and_the_next_one_runs() {
        let tmp = tempfile::tempdir().expect("tmp");
        let out = tmp.path().join("ran");
        let second = format!("echo second > {}", out.display());
        let hooks = [hook(&["sh", "-c", "exit 7"], None), hook(&["sh", "-c", &second], None)];
        let failed = run_each_warning("poststart", &hooks, &serde_json::json!({}));
        assert_eq!(failed.len(), 1);
        assert!(failed[0].to_string().contains("poststart /bin/sh"), "{}", failed[0]);
        assert_eq!(std::fs::read_to_string(&out).expect("the second hook ran"), "second\n");
        // A gating kind stops at the first failure.
        std::fs::remove_file(&out).expect("rm");
        assert!(run_all("prestart", &hooks, &serde_json::json!({})).is_err());
        assert!(!out.exists(), "prestart stops at the first failure");
    }

    #[test]
    fn a_failing_or_hanging_hook_is_an_error_naming_it() {
        let e = run_all("prestart", &[hook(&["sh", "-c", "echo broken >&2; exit 3"], None)], &serde_json::json!({}))
            .expect_err("fails");
        assert!(e.to_string().contains("prestart /bin/sh") && e.to_string().contains("broken"), "{e}");
        let t = Instant::now();
        let e = run_all("poststart", &[hook(&["sh", "-c", "exec sleep 30"], Some(1))], &serde_json::json!({}))
            .expect_err("times out");
        assert!(e.to_string().contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(20));
    }
}
