//! The `isola` binary, run for real.

use std::process::Command;

fn isola(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_isola")).args(args).output().expect("run isola")
}

#[test]
fn bench_boot_runs_every_series_and_phases_are_ordered() {
    let dir = tempfile::tempdir().expect("tmp");
    let json = dir.path().join("boot.json");
    let svg = dir.path().join("boot.svg");
    let out = isola(&[
        "bench",
        "boot",
        "-n",
        "2",
        "--warmup",
        "0",
        "--json",
        json.to_str().expect("p"),
        "--svg",
        svg.to_str().expect("p"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid json");
    let series = v["series"].as_array().expect("series");
    assert!(series.len() >= 2, "isola-vmm and at least one peer: {v}");
    for s in series {
        let name = format!("{} / {}", s["key"]["backend"], s["key"]["guest"]);
        let runs = s["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 2, "{name}: {s}");
        for run in runs {
            let at = |p: &str| run[p].as_u64();
            if s["key"]["guest"] == "Container" {
                let total = at("total").unwrap_or_else(|| panic!("{name}: no total in {run}"));
                if s["key"]["backend"] == "runc" {
                    continue;
                }
                let order = ["agent_ready", "container_created", "container_started", "container_exited", "vmm_exited"];
                let times: Vec<u64> =
                    order.iter().map(|p| at(p).unwrap_or_else(|| panic!("{name}: no {p} in {run}"))).collect();
                assert!(times.windows(2).all(|w| w[0] <= w[1]), "{name}: phases out of order: {run}");
                assert!(times[4] <= total, "{name}: {run}");
                continue;
            }
            let total = at("exited").unwrap_or_else(|| panic!("{name}: no total in {run}"));
            let marker = at("console_marker").unwrap_or_else(|| panic!("{name}: no marker in {run}"));
            assert!(marker <= total, "{name}: {run}");
            if s["key"]["backend"] == "isola-vmm" {
                let (ready, timer, exit) = (at("vmm_ready"), at("boot_timer"), at("vmm_exit"));
                let (ready, timer, exit) =
                    (ready.expect("vmm_ready"), timer.expect("boot_timer"), exit.expect("vmm_exit"));
                assert!(ready < timer && timer <= exit && exit <= total, "{name}: {run}");
            }
        }
        assert!(s["failures"].as_array().expect("failures").is_empty(), "{name}: {s}");
    }
    // QEMU's KVM accelerator aborts on some PVM hosts: then the bench says so, and the
    // container ratio (against runc) is the one that must be there.
    let ratio = |phase: &str| v["ratios"].as_array().expect("ratios").iter().any(|r| r["phase"] == phase);
    let qemu_kvm_not_run = v["not_run"].to_string().contains("qemu-kvm: QEMU with KVM cannot boot");
    assert!(ratio("exited") || (qemu_kvm_not_run && ratio("total")), "{v}");
    assert!(v["inputs"]["test_guest_sha256"].as_str().is_some_and(|h| h.len() == 64));
    let svg = std::fs::read_to_string(&svg).expect("svg written");
    assert!(svg.starts_with("<svg") && svg.contains("isola-vmm"), "{}", &svg[..svg.len().min(200)]);
    assert!(stdout.contains("ratio isola / peer"), "{stdout}");
    let has = |b: &str| series.iter().any(|s| s["key"]["backend"] == b && s["key"]["guest"] == "Container");
    assert!(has("isola-qemu") || has("isola-isola-vmm"), "a container series: {v}");
    assert!(has("runc") || v["not_run"].to_string().contains("runc"), "runc measured or said why not: {v}");
}

#[test]
fn boot_with_a_missing_kernel_is_one_clear_line() {
    let out = isola(&["boot", "--kernel", "/nonexistent/vmlinux", "--hypervisor", "qemu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("kernel /nonexistent/vmlinux does not exist"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bad_arguments_are_refused() {
    let out = isola(&["boot", "--hypervisor", "xen"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown hypervisor \"xen\""));
    let out = isola(&["bench", "boot", "--compare", "firecracker"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--compare takes qemu or none"));
}

#[test]
fn boot_reports_json_with_phases() {
    let out = isola(&["boot", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["success"], true);
    assert!(v["console"].as_str().expect("console").contains("isola-init: ready"));
    let names: Vec<&str> = v["phases"].as_array().expect("phases").iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(names.contains(&"console_marker") && names.contains(&"exited"), "{names:?}");
}

/// Exec, density and overhead benches run for real and report every figure (no speed asserted).
#[test]
fn bench_exec_density_and_overhead_report_their_figures() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = |n: &str| dir.path().join(n).to_str().expect("p").to_string();
    let read = |n: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(n)).expect("json written")).expect("valid json")
    };
    let out = isola(&["bench", "exec", "--pings", "50", "--execs", "3", "--json", &path("exec.json")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = read("exec.json");
    assert_eq!(v["ping_us"]["n"], 50, "{v}");
    assert_eq!(v["exec_us"]["n"], 3, "{v}");
    assert!(v["ping_us"]["p50"].as_u64().expect("p50") <= v["ping_us"]["p99"].as_u64().expect("p99"));

    let out = isola(&["bench", "density", "-n", "2", "--json", &path("density.json")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let v = read("density.json");
    assert_eq!(v["all_answered_ping"], true, "{v}");
    let per = v["per_sandbox"].as_array().expect("per sandbox");
    assert_eq!(per.len(), 2);
    assert!(per.iter().all(|m| m["pss_kib"].as_u64().unwrap_or(0) > 0), "{v}");

    let out = isola(&["bench", "overhead", "-n", "1", "--json", &path("overhead.json")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let v = read("overhead.json");
    let series = v.as_array().expect("series");
    assert_eq!(series.len(), 2, "isola-vmm and qemu: {v}");
    assert!(series[0]["not_run"].is_null(), "isola-vmm always runs: {v}");
    for s in series {
        if let Some(why) = s["not_run"].as_str() {
            assert!(s["backend"] == "qemu-kvm" && why.contains("QEMU with KVM cannot boot"), "{v}");
            continue;
        }
        let sample = &s["samples"][0];
        let (rss, guest) = (sample["rss_kib"].as_u64().expect("rss"), sample["guest_rss_kib"].as_u64().expect("g"));
        assert!(rss > guest && guest > 0, "the guest's RAM is found and the VMM has some of its own: {s}");
    }
    let out = isola(&["bench", "fs", "--json", &path("fs.json")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = read("fs.json");
    for side in ["guest", "host"] {
        for k in ["write_mb_s", "read_mb_s", "small_files_per_s"] {
            assert!(v["volume"][side][k].as_f64().is_some_and(|x| x > 0.0), "volume.{side}.{k}: {v}");
        }
    }
    // The rootfs three ways: an erofs disk, virtio-fs, the host.
    for side in ["disk", "share", "host"] {
        for k in ["read_mb_s", "walk_entries_per_s", "tar_files_per_s"] {
            assert!(v["rootfs"][side][k].as_f64().is_some_and(|x| x > 0.0), "rootfs.{side}.{k}: {v}");
        }
    }
    assert!(v["rootfs"]["disk_bytes"].as_u64().is_some_and(|b| b > 64 << 20), "{v}");
    // Nothing is left running.
    let leaked = leftover_bench_sandboxes();
    assert!(leaked.is_empty(), "sandboxes left behind: {leaked:?}");
}

fn leftover_bench_sandboxes() -> Vec<String> {
    std::fs::read_dir("/run/isola")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // Only this test's benches: bench boot runs in parallel with its own sandboxes.
        .filter(|n| n.starts_with("bench-exec-") || n.starts_with("bench-density") || n.starts_with("bench-fs-"))
        .collect()
}

/// The host config file is read: its kernel replaces the default, and its mistakes are
/// named with the file they are in.
#[test]
fn the_host_config_file_sets_defaults_and_names_its_mistakes() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("config.toml");
    let run = |cfg: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_isola"))
            .args(["run", "--rootfs", "/var/lib/isola/busybox-rootfs", "--", "true"])
            .env("ISOLA_CONFIG", cfg)
            .output()
            .expect("run isola")
    };
    std::fs::write(&cfg, "kernel = \"/nonexistent/vmlinux-from-config\"\n").expect("write");
    let out = run(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("/nonexistent/vmlinux-from-config"), "{err}");
    // `isola boot` and the benches take the same kernel (one home for host policy).
    let out = Command::new(env!("CARGO_BIN_EXE_isola"))
        .args(["boot", "--hypervisor", "qemu"])
        .env("ISOLA_CONFIG", &cfg)
        .output()
        .expect("run isola boot");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("/nonexistent/vmlinux-from-config"), "{err}");
    std::fs::write(&cfg, "kernal = \"/x\"\n").expect("write");
    let out = run(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(cfg.to_str().expect("p")) && err.contains("unknown field `kernal`"), "{err}");
}
