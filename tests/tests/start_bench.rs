//! `isola bench start` end to end on this host's KVM: a template snapshot of the
//! ticker test guest, cold boots and restores side by side, and clones at once. It
//! checks that every mode measured and the table and JSON say so; the figures
//! themselves are for the README, never asserted here.

use isola_e2e::isola;

#[test]
fn bench_start_measures_cold_boots_restores_and_clones_in_one_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let json = dir.path().join("start.json");
    let (out, err, code) =
        isola(&["bench", "start", "-n", "3", "--clones", "2", "--json", json.to_str().expect("utf-8")], None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("ratio snapshot / cold (p50)"), "{out}");
    assert!(out.contains("ratio PSS snapshot / cold"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
    let modes = v["modes"].as_array().expect("modes");
    assert_eq!(modes.len(), 2);
    for m in modes {
        assert_eq!(m["guest_running"]["n"], 3, "{m}");
        assert!(m["failures"].as_array().expect("failures").is_empty(), "{m}");
    }
    let density = v["density"].as_array().expect("density");
    assert_eq!(density.len(), 2);
    assert!(density.iter().all(|d| d["pss_kib_per_vmm"].as_u64().unwrap_or(0) > 0), "{density:?}");
    // No VMM left running after the bench.
    let left = std::process::Command::new("pgrep").args(["-f", "isola-bench-start-"]).output().expect("pgrep");
    assert!(left.stdout.is_empty(), "left running: {}", String::from_utf8_lossy(&left.stdout));
}

/// `isola bench start --concurrency`: N `isola run` at once, cold and from the warm
/// pool, on this host's backend. Every start succeeds, the rows say so with their
/// figures, and nothing is left behind (the leak inventory: no tap, netns, mount,
/// cgroup, socket, file or process).
#[test]
fn concurrent_starts_each_succeed_and_leave_nothing() {
    let before = isola_e2e::leaks::snapshot();
    let dir = tempfile::tempdir().expect("tmp");
    let json = dir.path().join("concurrency.json");
    let args =
        ["bench", "start", "--concurrency", "1,4", "--mode", "cold,pool", "--json", json.to_str().expect("utf-8")];
    let (out, err, code) = isola(&args, None);
    assert_eq!(code, 0, "{out}\n{err}");
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 4, "{out}");
    for r in rows {
        let n = r["n"].as_u64().expect("n");
        assert_eq!(r["succeeded"].as_u64(), Some(n), "{r}");
        assert!(r["failures"].as_array().is_some_and(|f| f.is_empty()), "{r}");
        assert!(r["per_second"].as_f64().is_some_and(|p| p > 0.0), "{r}");
        assert_eq!(r["start_us"]["n"].as_u64(), Some(n), "{r}");
        let (host, outside) = (r["host_cpu_us_per_start"].as_u64(), r["outside_guest_us_per_start"].as_u64());
        assert!(host.zip(outside).is_some_and(|(h, o)| o <= h), "{r}");
    }
    // A cold start boots a guest: the vCPU threads were found and their time set apart.
    let cold = rows.iter().find(|r| r["mode"] == "run cold" && r["n"] == 4).expect("cold x4");
    assert!(cold["vcpu_us_per_start"].as_u64().is_some_and(|v| v > 0), "{cold}");
    let left = isola_e2e::leaks::settle(&before, 30);
    assert!(left.is_empty(), "left behind: {left:?}");
}
