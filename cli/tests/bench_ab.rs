//! `isola bench ab` and `compare` for real: two copies of the same isola-vmm show no
//! significant difference, a deliberately slowed one is reported slower, and compare
//! refuses results whose fixed inputs differ.

use std::path::Path;
use std::process::{Command, Output};

fn isola(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isola")).args(args).output().expect("run isola")
}

fn vmm() -> std::path::PathBuf {
    // The isola-vmm cargo built beside the isola under test.
    Path::new(env!("CARGO_BIN_EXE_isola")).with_file_name("isola-vmm")
}

fn verdicts(json: &Path) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).expect("json")).expect("valid json");
    v["comparison"]["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| {
            (p["phase"].as_str().unwrap_or("").to_string(), p["outcome"]["verdict"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

fn ab(dir: &Path, name: &str, extra: &[&str]) -> (Output, Vec<(String, String)>) {
    let copy = dir.join("isola-vmm-copy");
    if !copy.exists() {
        std::fs::copy(vmm(), &copy).expect("copy isola-vmm");
    }
    let json = dir.join(format!("{name}.json"));
    let svg = dir.join(format!("{name}.svg"));
    let (a, b) = (vmm().display().to_string(), copy.display().to_string());
    let mut args = vec!["bench", "ab", "-n", "10", "--warmup", "1", "--a", &a, "--b", &b];
    args.extend_from_slice(extra);
    let (j, s) = (json.display().to_string(), svg.display().to_string());
    args.extend_from_slice(&["--json", &j, "--svg", &s]);
    let out = isola(&args);
    assert!(svg.exists(), "the distributions were drawn");
    (out, verdicts(&json))
}

#[test]
fn ab_of_identical_builds_finds_no_difference_and_a_slowed_build_is_slower() {
    let dir = tempfile::tempdir().expect("tmp");
    // Strict level for the identical pair: a false alarm needs p < 0.0002 over 5 phases
    // and a 10 % change of the median at once.
    let (out, v) = ab(dir.path(), "same", &["--alpha", "0.001", "--min-effect", "10", "--fail-on-slower"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(v.len() >= 4, "{v:?}");
    assert!(v.iter().all(|(_, verdict)| verdict == "no-significant-difference"), "{v:?}\n{stdout}");

    // A delay far above the jitter of a loaded machine (tens of ms): every B run is slower
    // than every A run, which is what the rank test needs to be significant at n = 10.
    let (out, v) = ab(dir.path(), "slowed", &["--b-args", "--start-delay-ms 200", "--fail-on-slower"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "--fail-on-slower: {stdout}");
    for phase in ["vmm_ready", "boot_timer", "console_marker"] {
        assert!(v.contains(&(phase.to_string(), "slower".to_string())), "{phase}: {v:?}\n{stdout}");
    }
    assert!(stdout.contains("SLOWER"), "{stdout}");
}

#[test]
fn compare_refuses_results_whose_fixed_inputs_differ() {
    let dir = tempfile::tempdir().expect("tmp");
    let base = serde_json::json!({
        "inputs": {"runs": 5, "warmup": 0, "vcpus": 1, "mem_mib": 128, "cmdline": "c", "host_kernel": "6.1",
                   "kvm": "pvm", "test_guest_sha256": "aa", "kernel_sha256": null, "initrd_sha256": null},
        "series": [{"key": {"backend": "isola-vmm", "guest": "TestGuest"},
                    "runs": (0..6).map(|i| serde_json::json!({"exited": 1000 + i})).collect::<Vec<_>>(),
                    "summary": {"exited": {"n": 6, "min": 1000, "p50": 1002, "p95": 1005, "p99": 1005, "max": 1005}},
                    "overhead_kib": [], "failures": []}],
        "ratios": [], "not_run": []
    });
    let mut other = base.clone();
    other["inputs"]["mem_mib"] = serde_json::json!(256);
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&a, base.to_string()).expect("write");
    std::fs::write(&b, other.to_string()).expect("write");
    let out = isola(&["compare-me-not"]);
    assert!(!out.status.success());
    let out = isola(&["bench", "compare", a.to_str().expect("p"), b.to_str().expect("p")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mismatched inputs must be refused");
    assert!(stderr.contains("mem_mib (128 vs 256)") && stderr.contains("--vary"), "{stderr}");
    let out = isola(&["bench", "compare", a.to_str().expect("p"), b.to_str().expect("p"), "--vary", "mem_mib"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("no significant difference"), "{stdout}");
}
