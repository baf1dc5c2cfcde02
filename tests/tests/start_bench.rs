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
