//! containerd 2.3 (`../shared/containerd-2.3`, or `$ISOLA_CONTAINERD2_DIR`) with the
//! shim: the bootstrap protocol picks task API v3, `-info` is answered, and the v3
//! socket goes with the shim; and a pod whose VM the shim makes through the sandbox
//! API (`sandboxer = "shim"`). The ctr and pause-container CRI flows run on 2.3 as
//! well: scripts/test.sh runs `containerd_ctr` and `containerd_cri` again with
//! `ISOLA_CONTAINERD=2.3`.

use std::path::Path;
use std::time::Duration;

use isola_e2e::containerd::{Containerd, CRI_VM_MIB, IMAGE, RUNTIME, SANDBOXER_HANDLER};
use isola_e2e::cri::{client, exec, pod_config, start_containers};
use k8s_cri::v1::*;

/// The address containerd logged for `id` ("connecting to shim ID" address=… version=N).
fn connection(log: &str, id: &str) -> Option<(String, String)> {
    let line = log.lines().find(|l| l.contains(&format!("connecting to shim {id}\"")))?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")).map(|v| v.trim_matches('"').to_string()))
    };
    Some((field("address")?, field("version")?))
}

#[test]
fn containerd_2_3_speaks_task_api_v3_to_the_shim_and_learns_its_features() {
    let c = Containerd::start_2_3();
    c.import_image("default");
    let o = c.ctr(&["run", "--rm", "--runtime", RUNTIME, IMAGE, "v3", "sh", "-c", "echo hi; exit 42"]);
    assert_eq!(o.code, 42, "{}{}\n{}", o.stdout, o.stderr, c.log());
    assert_eq!(o.stdout, "hi\n");
    let log = c.log();
    let (address, version) = connection(&log, "v3").unwrap_or_else(|| panic!("no shim connection logged:\n{log}"));
    assert_eq!(version, "3", "task API version containerd chose:\n{log}");
    assert!(address.ends_with("-v3"), "{address}");
    assert!(!log.contains("failed to load runtime info"), "-info was not answered:\n{log}");
    c.assert_nothing_left();
    let socket = address.trim_start_matches("unix://");
    assert!(!Path::new(socket).exists(), "the v3 socket {socket} is left");
}

/// What containerd 2.x runs at start-up: `containerd-shim-isola-v2 -info`, with no
/// namespace and runtime options on stdin, decoded as containerd decodes it.
#[test]
fn the_shims_info_decodes_as_runtime_info_with_its_oci_features() {
    use containerd_shim::protos::protobuf::Message;
    use containerd_shim::protos::types::introspection::RuntimeInfo;
    let shim = isola_e2e::require_binary("containerd-shim-isola-v2", "cargo build");
    let mut child = std::process::Command::new(shim)
        .arg("-info")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("shim -info");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&[0x12, 0x03, b'/', b'x', b'y']).expect("options on stdin");
    }
    let out = child.wait_with_output().expect("-info");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info = RuntimeInfo::parse_from_bytes(&out.stdout).expect("RuntimeInfo protobuf");
    assert_eq!(info.name, RUNTIME);
    assert!(!info.version.version.is_empty(), "a version");
    let features = info.features.as_ref().expect("features");
    assert!(features.type_url.ends_with("runtime-spec/1/features/Features"), "{}", features.type_url);
    let doc: serde_json::Value = serde_json::from_slice(&features.value).expect("features JSON");
    assert_eq!((doc["ociVersionMin"].as_str(), doc["linux"]["cgroup"]["v2"].as_bool()), (Some("1.0.0"), Some(true)));
    assert!(doc["linux"]["namespaces"].as_array().is_some_and(|n| n.iter().any(|x| x == "network")), "{doc}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_shim_as_sandboxer_makes_the_pods_vm_without_a_pause_container() {
    let c = Containerd::start_2_3();
    c.import_image("k8s.io");
    let logs = c.dir.path().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("logs");
    let mut rt = client(&c).await;
    let pod = pod_config(&logs);
    let sandbox = rt
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(pod.clone()), runtime_handler: SANDBOXER_HANDLER.into() })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log()))
        .into_inner()
        .pod_sandbox_id;
    let log = c.log();
    let (address, version) =
        connection(&log, &sandbox).unwrap_or_else(|| panic!("no shim connection for the sandbox:\n{log}"));
    assert_eq!(version, "3", "{log}");
    let status = rt
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sandbox.clone(), verbose: false })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32, "{status:?}");
    let pod_ip = status.network.map(|n| n.ip).unwrap_or_default();
    assert!(pod_ip.starts_with("10.77.0."), "CNI gave the pod an address: {pod_ip:?}");
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for the pod: {shims:?}");
    let vmms = isola_e2e::containerd::pids_with_args(&["qemu-system", c.isola_state.to_str().expect("path")]);
    assert_eq!(vmms.len(), 1, "CreateSandbox booted the pod's VM: {vmms:?}");

    let ids = start_containers(&mut rt, &c, &sandbox, &pod, &["a", "b"]).await;
    assert_eq!(c.shim_pids(), shims, "the containers went to the sandbox's shim");
    let vmms_now = isola_e2e::containerd::pids_with_args(&["qemu-system", c.isola_state.to_str().expect("path")]);
    assert_eq!(vmms_now, vmms, "and into its VM");
    // No pause container: containerd's only tasks are the two containers.
    let tasks = c.ctr_in(Some("k8s.io"), &["tasks", "ls", "-q"]);
    let mut listed: Vec<&str> = tasks.stdout.lines().collect();
    listed.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(listed, want, "tasks (no sandbox task): {}{}", tasks.stdout, tasks.stderr);

    // What the pod config said reached the VM: its address, hostname, sysctl and size.
    for id in &ids {
        let (out, code) = exec(&mut rt, id, "busybox ip -4 -o addr show eth0; busybox hostname").await;
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("inet {pod_ip}/24")), "{id} sees {out}");
        assert!(out.ends_with("pod1\n"), "the pod's hostname: {out}");
    }
    let (out, code) = exec(&mut rt, &ids[0], "busybox ping -c 1 -W 5 10.77.0.1").await;
    assert_eq!(code, 0, "ping the CNI gateway from the pod: {out}");
    let (v, _) = exec(&mut rt, &ids[1], "cat /proc/sys/kernel/shm_rmid_forced").await;
    assert_eq!(v.trim(), "1", "the pod's sysctl");
    let (meminfo, _) = exec(&mut rt, &ids[0], "cat /proc/meminfo").await;
    let total_kib = isola_e2e::containerd::mem_total_kib(&meminfo);
    let want = CRI_VM_MIB * 1024;
    assert!(total_kib > want * 8 / 10 && total_kib <= want, "guest MemTotal {total_kib} KiB for {want} KiB");
    let (ps_a, _) = exec(&mut rt, &ids[0], "busybox ps -o args").await;
    assert!(ps_a.contains("started-a") && !ps_a.contains("started-b"), "a PID namespace each: {ps_a}");

    rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sandbox.clone() })
        .await
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", c.log()));
    let status = rt
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sandbox.clone(), verbose: false })
        .await
        .expect("PodSandboxStatus after stop")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(status.state, PodSandboxState::SandboxNotready as i32, "{status:?}");
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while !c.sandbox_pids().is_empty() {
        assert!(std::time::Instant::now() < until, "the VM outlived StopPodSandbox: {:?}", c.sandbox_pids());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox.clone() })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", c.log()));
    c.assert_nothing_left();
    let socket = address.trim_start_matches("unix://");
    assert!(!Path::new(socket).exists(), "the shim's socket {socket} is left");
}

/// containerd's blockfile snapshotter: the container's snapshot (an ext4 block file)
/// is its VM's read-write disk. The container runs on it and writes in it; nothing of
/// it is mounted on the host (no loop mount, whose kernel would parse what the guest
/// wrote), no virtiofsd runs, and nothing is left after delete.
#[test]
fn a_blockfile_snapshot_is_the_vms_own_disk_with_nothing_mounted_on_the_host() {
    let c = Containerd::start_2_3();
    c.import_image_into("default", Some("blockfile"));
    let script = "echo written > /written; cat /written; grep ' / / ' /proc/self/mountinfo; exit 7";
    let o =
        c.ctr(&["run", "--rm", "--snapshotter", "blockfile", "--runtime", RUNTIME, IMAGE, "bf1", "sh", "-c", script]);
    assert_eq!(o.code, 7, "{}{}\n{}", o.stdout, o.stderr, c.log());
    assert!(o.stdout.starts_with("written\n"), "{}", o.stdout);
    let root = o.stdout.lines().nth(1).unwrap_or_default();
    assert!(root.contains(" - ext4 /dev/vd") && root.contains(" rw"), "the root is the disk, read-write: {root}");

    let o = c.ctr(&[
        "run",
        "-d",
        "--snapshotter",
        "blockfile",
        "--runtime",
        RUNTIME,
        IMAGE,
        "bf2",
        "busybox",
        "sleep",
        "120",
    ]);
    assert_eq!(o.code, 0, "{}{}\n{}", o.stdout, o.stderr, c.log());
    // A loop device over one of our snapshots would mean the host mounted it.
    let root = c.dir.path().display().to_string();
    let loop_mounts: Vec<String> = std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .filter(|f| f.starts_with(&root))
        .collect();
    let virtiofsd: Vec<i32> = c
        .sandbox_pids()
        .into_iter()
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|n| n.starts_with("virtiofsd")))
        .collect();
    let e = c.ctr(&["task", "exec", "--exec-id", "x", "bf2", "sh", "-c", "cat /written 2>&1; echo $?"]);
    let _ = c.ctr(&["task", "kill", "-s", "9", "bf2"]);
    std::thread::sleep(Duration::from_secs(1));
    let _ = c.ctr(&["task", "delete", "bf2"]);
    let _ = c.ctr(&["container", "delete", "bf2"]);
    assert!(loop_mounts.is_empty(), "the snapshot is mounted on the host: {loop_mounts:?}");
    assert!(virtiofsd.is_empty(), "virtiofsd runs for a disk rootfs: {virtiofsd:?}");
    assert!(e.stdout.ends_with("1\n"), "another container's snapshot is its own: {}", e.stdout);
    c.assert_nothing_left();
}
