//! `isola update` on a running container, as `docker update`: the memory limit goes
//! down and up again, and the guest's cgroup, the guest's free memory (the balloon),
//! and the VM's host cgroup follow; a process past the new limit is killed inside the
//! container and the sandbox lives on. Through the CLI on the backend this host picks.

use isola_e2e::{busybox_rootfs, isola, processes_mentioning};
use isola_sandbox::state;

const NAME: &str = "e2e-resize";

fn update(mib: u64) -> serde_json::Value {
    let (out, err, code) = isola(&["update", "-m", &format!("{mib}m"), "--json", NAME], None);
    assert_eq!(code, 0, "update -m {mib}m: {out}\n{err}");
    serde_json::from_str(out.trim()).expect("update json")
}

fn exec(script: &str) -> (String, i32) {
    let (out, err, code) = isola(&["exec", NAME, "--", "sh", "-c", script], None);
    (format!("{out}{err}"), code)
}

fn limit_in_guest() -> u64 {
    let (out, err, code) = isola(&["stats", "--no-stream", "--json", NAME], None);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(out.trim()).expect("stats json");
    rows[0]["memory_limit_bytes"].as_u64().expect("a limit")
}

fn mem_available_kib() -> u64 {
    let (out, code) = exec("grep MemAvailable /proc/meminfo");
    assert_eq!(code, 0, "{out}");
    out.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("MemAvailable")
}

/// The limit of the sandbox's host cgroup, read as the host sees it.
fn host_limit() -> Option<u64> {
    let dir = state::default_root().join(NAME);
    let cg = isola_sandbox::cgroup::dir_for(&dir)?;
    let file = ["memory.max", "memory.limit_in_bytes"].into_iter().map(|f| cg.join(f)).find(|p| p.exists())?;
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[test]
fn update_shrinks_and_grows_a_running_containers_memory_and_its_vm_follows() {
    let r = busybox_rootfs().display().to_string();
    let _ = isola(&["rm", "-f", NAME], None);
    let (out, err, code) =
        isola(&["run", "-d", "--name", NAME, "-m", "256m", "--rootfs", &r, "--", "sleep", "100000"], None);
    assert_eq!((out.trim(), code), (NAME, 0), "{err}");
    let roomy = mem_available_kib();

    // Down: the guest hands its balloon the difference, and can use no more.
    let small = update(64);
    assert_eq!(limit_in_guest(), 64 << 20);
    let mib = |k: &str| small[k].as_u64().unwrap_or_else(|| panic!("{k} in {small}"));
    // Within a MiB: the guest counts 4 KiB pages, the answer whole MiB.
    assert!(
        mib("balloon_target_mib").abs_diff(mib("balloon_actual_mib")) <= 1,
        "the guest reached the target: {small}"
    );
    assert!(small["balloon_actual_mib"].as_u64().is_some_and(|b| b >= 150), "{small}");
    let tight = mem_available_kib();
    assert!(tight + (150 << 10) <= roomy, "the guest sees less free memory: {roomy} → {tight} KiB");
    if let Some(host) = host_limit() {
        assert_eq!(Some(host), small["host_limit_bytes"].as_u64(), "the host cgroup was lowered to what was said");
    }
    let (out, code) = exec("dd if=/dev/zero of=/dev/null bs=100M count=1");
    assert_ne!(code, 0, "100 MiB in one buffer fits no 64 MiB limit: {out}");
    let (out, code) = exec("echo alive");
    assert_eq!((out.trim(), code), ("alive", 0), "the sandbox outlives its container's OOM");

    // Up again: the balloon gives the memory back and the same work now fits.
    let big = update(250);
    assert_eq!(limit_in_guest(), 250 << 20);
    assert!(big["balloon_actual_mib"].as_u64().is_some_and(|b| b <= 8), "{big}");
    assert!(mem_available_kib() >= tight + (150 << 10), "the guest has its memory back");
    if let Some(host) = host_limit() {
        assert!(host >= 250 << 20, "the host cgroup grew with it: {host}");
    }
    let (out, code) = exec("dd if=/dev/zero of=/dev/null bs=200M count=1");
    assert_eq!(code, 0, "{out}");

    // Past what the VM booted with: refused, and nothing changed.
    let (out, err, code) = isola(&["update", "-m", "1g", NAME], None);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("booted with"), "{err}");
    assert_eq!(limit_in_guest(), 250 << 20);

    let (_, err, code) = isola(&["rm", "-f", NAME], None);
    assert_eq!(code, 0, "{err}");
    assert!(!state::default_root().join(NAME).exists());
    assert!(processes_mentioning(&format!("/{NAME}/")).is_empty());
}
