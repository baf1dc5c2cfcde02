//! The warm pool under this host's backend (QEMU here): `isola pool fill`, `isola run`
//! taking each pooled sandbox once (two runs at once get two different ones), the
//! background refill, `isola pool stop`, and kill -9 of a filler or of a run that took
//! a pooled sandbox, each followed by the host leak check.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use isola_e2e::chaos::{rounds, Rng};
use isola_e2e::{busybox_rootfs, isola, leaks, require_binary};

/// Stops the pool however the test ends.
struct PoolGuard;
impl Drop for PoolGuard {
    fn drop(&mut self) {
        let _ = isola(&["pool", "stop"], None);
    }
}

/// Ready pool sandboxes: (id, VMM pid).
fn members() -> Vec<(String, i32)> {
    let (out, err, code) = isola(&["pool", "ls"], None);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .skip(1)
        .filter(|l| !l.contains("(booting)"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
        })
        .collect()
}

fn wait_members(n: usize, secs: u64) -> Vec<(String, i32)> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let m = members();
        if m.len() >= n {
            return m;
        }
        assert!(Instant::now() < until, "the pool did not reach {n} within {secs} s: {m:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The recorded state of sandbox `name`, as `isola inspect` shows it.
fn state_of(name: &str) -> serde_json::Value {
    let (out, err, code) = isola(&["inspect", name], None);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
    v["state"].clone()
}

fn vmm_pid_of(name: &str) -> i32 {
    state_of(name)["vmm_pid"].as_i64().expect("vmm_pid") as i32
}

#[test]
fn runs_take_each_pooled_sandbox_once_and_the_pool_refills() {
    let r = busybox_rootfs().display().to_string();
    let before = leaks::snapshot();
    let _g = PoolGuard;
    let (out, err, code) = isola(&["pool", "fill", "-n", "2", "--network", "none"], None);
    assert_eq!(code, 0, "{out}{err}");
    let first = wait_members(2, 5);
    // A foreground run from the pool: its output and exit code, and one sandbox fewer.
    let (out, err, code) = isola(
        &["run", "--name", "e2e-pool-fg", "--network", "none", "--rootfs", &r, "--", "sh", "-c", "echo pooled; exit 5"],
        None,
    );
    assert_eq!((out.as_str(), code), ("pooled\n", 5), "{err}");
    let now = members();
    assert!(first.iter().any(|m| !now.contains(m)), "no pooled sandbox was taken: {first:?} then {now:?}");
    // Refilled in the background.
    let pool = wait_members(2, 120);
    // Two runs at once: each takes a different pooled sandbox.
    let bin = require_binary("isola", "cargo build");
    let runs: Vec<_> = ["e2e-pool-a", "e2e-pool-b"]
        .iter()
        .map(|n| {
            Command::new(&bin)
                .args(["run", "-d", "--name", n, "--network", "none", "--rootfs", &r, "--", "sleep", "60"])
                .stdin(Stdio::null())
                .output()
                .expect("isola run -d")
        })
        .collect();
    let runs: Vec<_> = runs.into_iter().collect();
    for o in &runs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (a, b) = (vmm_pid_of("e2e-pool-a"), vmm_pid_of("e2e-pool-b"));
    assert_ne!(a, b, "two runs got the same VM");
    let pooled: Vec<i32> = pool.iter().map(|m| m.1).collect();
    assert!(pooled.contains(&a) && pooled.contains(&b), "runs booted their own VMs ({a}, {b}) instead of {pooled:?}");
    let (_, err, code) = isola(&["exec", "e2e-pool-a", "--", "hostname"], None);
    assert_eq!(code, 0, "{err}");
    let (_, err, code) = isola(&["rm", "-f", "e2e-pool-a", "e2e-pool-b"], None);
    assert_eq!(code, 0, "{err}");
    // --no-pool boots its own even with sandboxes waiting.
    let waiting = wait_members(2, 120);
    let (_, err, code) = isola(&["run", "--no-pool", "--network", "none", "--rootfs", &r, "--", "true"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(members(), waiting, "--no-pool took a pooled sandbox");
    let (out, _, code) = isola(&["pool", "stop"], None);
    assert_eq!((out.trim(), code), ("stopped 2", 0));
    let left = leaks::settle(&before, 30);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

#[test]
fn a_filler_or_a_pooled_run_killed_with_minus_nine_leaves_nothing() {
    let r = busybox_rootfs().display().to_string();
    let bin = require_binary("isola", "cargo build");
    let (mut rng, seed) = Rng::from_env();
    eprintln!("chaos seed {seed} (ISOLA_CHAOS_SEED={seed} replays this run)");
    let before = leaks::snapshot();
    let _g = PoolGuard;
    for round in 0..rounds(4) {
        let delay = rng.below(2500);
        let mut fill = Command::new(&bin)
            .args(["pool", "fill", "-n", "1", "--network", "none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pool fill");
        std::thread::sleep(Duration::from_millis(delay));
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(fill.id() as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = fill.wait();
        let _ = isola(&["pool", "stop"], None);
        let left = leaks::settle(&before, 30);
        assert!(left.is_empty(), "round {round} (seed {seed}), filler killed at {delay} ms: left behind {left:#?}");
    }
    // A foreground run on a pooled sandbox, killed: its cleaner removes the sandbox.
    let (_, err, code) = isola(&["pool", "fill", "-n", "1", "--network", "none"], None);
    assert_eq!(code, 0, "{err}");
    let pooled = wait_members(1, 5)[0].1;
    let mut run = Command::new(&bin)
        .args(["run", "--name", "e2e-pool-kill", "--network", "none", "--rootfs", &r, "--", "sleep", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("isola run");
    let dir = isola_sandbox::state::default_root().join("e2e-pool-kill");
    let until = Instant::now() + Duration::from_secs(30);
    while !isola_sandbox::state::SandboxState::load(&dir).is_ok_and(|st| st.container.is_some()) {
        assert!(Instant::now() < until, "the run did not create its container");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(vmm_pid_of("e2e-pool-kill"), pooled, "the run did not take the pooled sandbox");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.id() as i32), nix::sys::signal::Signal::SIGKILL);
    let _ = run.wait();
    let _ = isola(&["pool", "stop"], None);
    let left = leaks::settle(&before, 30);
    assert!(left.is_empty(), "a killed pooled run left behind {left:#?}");
}

fn ip_of(name: &str) -> String {
    let st = state_of(name);
    st["net"]["ip"].as_str().unwrap_or_else(|| panic!("{name} has no address: {st}")).to_string()
}

#[test]
fn pooled_and_booted_sandboxes_on_the_bridge_never_share_an_address() {
    let r = busybox_rootfs().display().to_string();
    let before = leaks::snapshot();
    let _g = PoolGuard;
    // The pool's sandbox is booted first and takes the lowest free address…
    let (_, err, code) = isola(&["pool", "fill", "-n", "1", "--network", "bridge"], None);
    assert_eq!(code, 0, "{err}");
    let pooled = wait_members(1, 5)[0].1;
    // …which a sandbox booted outside the pool must not take again.
    for (name, from_pool) in [("e2e-pool-cold", false), ("e2e-pool-warm", true)] {
        let mut args = vec!["run", "-d", "--name", name, "--network", "bridge", "--rootfs", &r];
        if !from_pool {
            args.push("--no-pool");
        }
        args.extend(["--", "sleep", "60"]);
        let (_, err, code) = isola(&args, None);
        assert_eq!(code, 0, "{name}: {err}");
    }
    assert_eq!(vmm_pid_of("e2e-pool-warm"), pooled, "the run did not take the pooled sandbox");
    let (cold, warm) = (ip_of("e2e-pool-cold"), ip_of("e2e-pool-warm"));
    assert_ne!(cold, warm, "a booted and a pooled sandbox share {cold}");
    let (out, err, code) = isola(&["exec", "e2e-pool-warm", "--", "ip", "-4", "addr", "show", "eth0"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{warm}/")), "the pooled guest does not have {warm}: {out}");
    let (_, err, code) = isola(&["rm", "-f", "e2e-pool-cold", "e2e-pool-warm"], None);
    assert_eq!(code, 0, "{err}");
    let _ = isola(&["pool", "stop"], None);
    let left = leaks::settle(&before, 30);
    assert!(left.is_empty(), "left behind: {left:#?}");
}
