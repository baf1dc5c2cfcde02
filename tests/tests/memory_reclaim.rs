//! Free page reporting end to end: a container touches 200 MiB and exits, and the
//! sandbox's host PSS falls back to near its idle figure when the balloon is on, and
//! stays up when it is off (same run, `isola bench density --reclaim`). What is checked
//! is that the memory comes back at all within a generous wait, not how fast: the
//! figures are the benchmark's.

use isola_e2e::isola;

const TOUCHED_MIB: u64 = 200;

#[test]
fn memory_a_guest_frees_goes_back_to_the_host_only_with_the_balloon() {
    let dir = tempfile::tempdir().expect("tmp");
    let json = dir.path().join("reclaim.json");
    let (out, err, code) = isola(
        &[
            "bench",
            "density",
            "--reclaim",
            &TOUCHED_MIB.to_string(),
            "--reclaim-wait",
            "20",
            "--memory",
            "512",
            "--json",
            json.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
    let runs = v["runs"].as_array().expect("runs");
    let kib = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    let touched = (TOUCHED_MIB << 10) * 3 / 4;
    let on = runs.iter().find(|r| r["balloon"] == true).expect("balloon on");
    let off = runs.iter().find(|r| r["balloon"] == false).expect("balloon off");
    for r in [on, off] {
        assert!(kib(r, "peak_kib") >= kib(r, "idle_kib") + touched, "the workload touched its memory: {r}\n{out}");
    }
    // Back: at least three quarters of what the workload touched (the rest is what the
    // guest still holds, and under TCG QEMU's translation cache, which grew with it).
    assert!(on["three_quarters_ms"].is_u64(), "with the balloon the memory came back: {on}\n{out}");
    assert!(kib(on, "peak_kib") - kib(on, "after_kib") >= touched, "{on}");
    assert!(off["three_quarters_ms"].is_null(), "without it the host keeps the pages: {off}\n{out}");
    assert!(kib(off, "after_kib") >= kib(off, "idle_kib") + touched, "{off}");
    let left = std::process::Command::new("pgrep").args(["-f", "bench-reclaim-"]).output().expect("pgrep");
    assert!(left.stdout.is_empty(), "left running: {}", String::from_utf8_lossy(&left.stdout));
}
