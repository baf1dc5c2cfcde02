//! Chaos: kill -9, at a random moment of a container's life (boot, Create, Start,
//! running, exit), one of the VMM, virtiofsd, the vsock daemon, the console pump, the
//! shim, or the client (`isola` / `ctr`); then the normal cleanup; then one leak check
//! (process, tap, netns, mount, state directory, nftables chain, iptables rule,
//! cgroup). Seeded: `ISOLA_CHAOS_SEED=N` replays a run, `ISOLA_CHAOS_ROUNDS` sizes it.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isola_e2e::chaos::{rounds, Rng};
use isola_e2e::containerd::{kill9, Containerd, IMAGE, RUNTIME};
use isola_e2e::{busybox_rootfs, isola, leaks, require_binary};
use isola_sandbox::state;

fn program_of(pid: i32) -> String {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = String::from_utf8_lossy(cmd.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
    std::path::Path::new(&argv0).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Waits for `child` up to `secs`; kills it after that (a hung client is a failure).
fn wait_or_kill(child: &mut Child, secs: u64) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid of `victim` among a sandbox's processes (VMM first, then helpers).
fn pick(victim: &str, pids: &[i32]) -> Option<i32> {
    let want: &[&str] = match victim {
        "vmm" => &["qemu-system-x86_64", "isola-vmm"],
        "virtiofsd" => &["virtiofsd"],
        "vsock" => &["vhost-device-vsock"],
        "console" => &["isola-console"],
        _ => &[],
    };
    pids.iter().copied().find(|p| want.contains(&program_of(*p).as_str()))
}

fn report(what: &str, seed: u64, points: &BTreeMap<String, usize>) {
    let table: Vec<String> = points.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    eprintln!("chaos {what} (seed {seed}): kill points {}", table.join(", "));
}

#[test]
fn isola_run_leaves_nothing_after_kill_minus_nine_anywhere() {
    let bin = require_binary("isola", "cargo build");
    let (mut rng, seed) = Rng::from_env();
    eprintln!("chaos seed {seed} (ISOLA_CHAOS_SEED={seed} replays this run)");
    let r = busybox_rootfs().display().to_string();
    let before = leaks::snapshot();
    let mut points = BTreeMap::new();
    for round in 0..rounds(10) {
        let victim = ["cli", "vmm", "virtiofsd", "vsock", "console"][rng.below(5) as usize];
        let delay = rng.below(3500);
        let name = format!("e2e-chaos-{round}");
        let mut cli = Command::new(&bin)
            .args(["run", "--name", &name, "--rootfs", &r, "--", "sh", "-c", "echo up; sleep 2; echo done"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("isola run");
        std::thread::sleep(Duration::from_millis(delay));
        let st = state::SandboxState::load(&state::default_root().join(&name)).ok();
        let mut pids = st.iter().map(|s| s.vmm_pid).filter(|p| *p > 0).collect::<Vec<_>>();
        pids.extend(st.iter().flat_map(|s| s.helper_pids.iter().copied()));
        // Too early for the victim (or it is gone already): the client dies instead.
        let (killed, pid) = match pick(victim, &pids) {
            Some(p) => (victim, p),
            None => ("cli", cli.id() as i32),
        };
        let bucket = format!("{killed}@{}ms", delay / 700 * 700);
        kill9(pid);
        let ended = wait_or_kill(&mut cli, 60);
        assert!(ended.is_some(), "round {round} (seed {seed}): isola run hung after {bucket}");
        let _ = isola(&["rm", "-f", &name], None);
        let _ = isola(&["ps"], None);
        let left = leaks::settle(&before, 20);
        assert!(left.is_empty(), "round {round} (seed {seed}), kill -9 of {bucket}: left behind {left:#?}");
        *points.entry(bucket).or_insert(0) += 1;
    }
    report("isola run", seed, &points);
}

#[test]
fn ctr_run_leaves_nothing_after_kill_minus_nine_anywhere() {
    let c = Containerd::start();
    c.import_image("default");
    let (mut rng, seed) = Rng::from_env();
    eprintln!("chaos seed {seed} (ISOLA_CHAOS_SEED={seed} replays this run)");
    let before = leaks::snapshot();
    let mut points = BTreeMap::new();
    for round in 0..rounds(6) {
        let victim = ["ctr", "shim", "vmm", "virtiofsd", "vsock"][rng.below(5) as usize];
        let delay = rng.below(4500);
        let id = format!("chaos{round}");
        let mut ctr = Command::new("ctr")
            .arg("-a")
            .arg(&c.sock)
            .args(["run", "--rm", "--runtime", RUNTIME, IMAGE, &id, "sh", "-c", "echo up; sleep 2; echo done"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr run");
        std::thread::sleep(Duration::from_millis(delay));
        let pid = match victim {
            "shim" => c.shim_pids().first().copied(),
            "ctr" => None,
            v => pick(v, &c.sandbox_pids()),
        };
        let (killed, pid) = match pid {
            Some(p) => (victim, p),
            None => ("ctr", ctr.id() as i32),
        };
        let bucket = format!("{killed}@{}ms", delay / 900 * 900);
        kill9(pid);
        // ctr itself may wait on a task whose shim is gone: it gets a minute.
        let _ = wait_or_kill(&mut ctr, 60);
        // A ctr killed during Create leaves containerd finishing that Create on its
        // own: the task shows up later ("not found" before), and removing the container
        // first would orphan it (with runc too). Let it land, then clean up as a user
        // (or kubelet) does.
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < until
            && !c.shim_pids().is_empty()
            && !c.ctr(&["task", "ls"]).stdout.lines().any(|l| l.split_whitespace().next() == Some(id.as_str()))
        {
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = c.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
        let _ = c.ctr(&["task", "delete", "-f", &id]);
        let _ = c.ctr(&["container", "rm", &id]);
        let left = leaks::settle(&before, 30);
        let dirs: Vec<_> =
            std::fs::read_dir(&c.isola_state).into_iter().flatten().flatten().map(|e| e.path()).collect();
        assert!(
            left.is_empty() && dirs.is_empty(),
            "round {round} (seed {seed}), kill -9 of {bucket}: left behind {left:#?} {dirs:?}\n{}",
            c.log()
        );
        *points.entry(bucket).or_insert(0) += 1;
    }
    report("ctr run", seed, &points);
}

/// The soak benchmark, short: sandboxes in a row and at once, none failing, nothing
/// left on the host (`isola bench soak` exits non-zero on a failure or a leak).
#[test]
fn a_short_soak_has_no_failures_and_no_leaks() {
    let json = tempfile::NamedTempFile::new().expect("json");
    let path = json.path().display().to_string();
    let (out, err, code) = isola(&["bench", "soak", "--sequential", "4", "--concurrent", "3", "--json", &path], None);
    assert_eq!(code, 0, "{out}\n{err}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json.path()).expect("json")).expect("json");
    let phases = r["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 2, "{r}");
    for (p, runs) in phases.iter().zip([4, 3]) {
        assert_eq!(p["runs"], runs, "{p}");
        assert_eq!(p["failures"].as_array().map(Vec::len), Some(0), "{p}");
        assert_eq!(p["leaks"].as_array().map(Vec::len), Some(0), "{p}");
    }
    assert!(out.contains("host-side RSS"), "{out}");
}

/// A foreground `isola run` killed with -9 once its container runs: its sandbox (VM,
/// helpers, share mounts, tap and rules, cgroup, state) is gone within seconds without
/// any other isola command being run (the run's cleaner does it).
#[test]
fn a_killed_foreground_run_is_cleaned_without_another_command() {
    let bin = require_binary("isola", "cargo build");
    let vol = tempfile::tempdir().expect("volume");
    let v = format!("{}:/data", vol.path().display());
    let r = busybox_rootfs().display().to_string();
    let before = leaks::snapshot();
    let mut cli = Command::new(&bin)
        .args([
            "run",
            "--name",
            "e2e-killed-fg",
            "-v",
            &v,
            "--rootfs",
            &r,
            "--",
            "sh",
            "-c",
            "touch /data/up; sleep 600",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("isola run");
    let until = Instant::now() + Duration::from_secs(60);
    while !vol.path().join("up").exists() {
        assert!(Instant::now() < until, "the container never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!leaks::leaked(&before, &leaks::snapshot()).is_empty(), "the running sandbox shows in the inventory");
    kill9(cli.id() as i32);
    let _ = cli.wait();
    let left = leaks::settle(&before, 15);
    assert!(left.is_empty(), "left behind after kill -9 of the CLI: {left:#?}");
    assert!(vol.path().join("up").exists(), "the volume's own files are kept");
}
