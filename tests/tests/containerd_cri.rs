//! A two-container pod through containerd's CRI plugin, driven by a small CRI client
//! (what kubelet does): one shim and one microVM for the pod, one network namespace
//! (the pod's CNI address inside the guest), separate PID namespaces.

use std::time::Duration;

use isola_e2e::containerd::Containerd;
use isola_e2e::cri::{client, container_config, exec, pod_config, start_containers};
use k8s_cri::v1::*;

#[tokio::test(flavor = "current_thread")]
async fn two_containers_share_one_vm_and_network_but_not_pids() {
    let c = Containerd::start();
    c.import_image("k8s.io");
    let logs = c.dir.path().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("logs");
    let mut rt = client(&c).await;
    let pod = pod_config(&logs);
    let sandbox = rt
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(pod.clone()), runtime_handler: "isola".into() })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log()))
        .into_inner()
        .pod_sandbox_id;
    let status = rt
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sandbox.clone(), verbose: false })
        .await
        .expect("status")
        .into_inner();
    let pod_ip = status.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
    assert!(pod_ip.starts_with("10.77.0."), "CNI gave the pod an address: {pod_ip:?}");

    let ids = start_containers(&mut rt, &c, &sandbox, &pod, &["a", "b"]).await;
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for the pod: {shims:?}");
    let shim_socket = Containerd::shim_socket(shims[0]).expect("the shim's -socket");
    let vmms = isola_e2e::containerd::pids_with_args(&["qemu-system", c.isola_state.to_str().expect("path")]);
    assert_eq!(vmms.len(), 1, "one VM for the pod: {vmms:?}");

    // One network: both containers see the pod's CNI address on the guest's eth0.
    for id in &ids {
        let (out, code) = exec(&mut rt, id, "busybox ip -4 -o addr show eth0").await;
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("inet {pod_ip}/24")), "{id} sees {out}");
    }
    // containerd's runtime options (ConfigPath) chose this pod's isola config: its VM size.
    let (meminfo, _) = exec(&mut rt, &ids[0], "cat /proc/meminfo").await;
    let total_kib = isola_e2e::containerd::mem_total_kib(&meminfo);
    let want = isola_e2e::containerd::CRI_VM_MIB * 1024;
    assert!(total_kib > want * 8 / 10 && total_kib <= want, "guest MemTotal {total_kib} KiB for {want} KiB");
    // Traffic flows through the tc redirect between the CNI veth and the VM's tap: the
    // guest reaches the CNI bridge on the host.
    let (out, code) = exec(&mut rt, &ids[0], "busybox ping -c 1 -W 5 10.77.0.1").await;
    assert_eq!(code, 0, "ping the CNI gateway from the pod: {out}");
    // Two PID namespaces: each container sees only its own processes.
    let (ps_a, _) = exec(&mut rt, &ids[0], "busybox ps -o args").await;
    assert!(ps_a.contains("started-a") && !ps_a.contains("started-b"), "{ps_a}");
    let (ps_b, _) = exec(&mut rt, &ids[1], "busybox ps -o args").await;
    assert!(ps_b.contains("started-b") && !ps_b.contains("started-a"), "{ps_b}");
    // The pod's IPC and UTS namespaces are shared (CRI joins the sandbox's); PID is not.
    let ns = "busybox readlink /proc/self/ns/ipc; busybox readlink /proc/self/ns/pid; busybox hostname";
    let (ns_a, _) = exec(&mut rt, &ids[0], ns).await;
    let (ns_b, _) = exec(&mut rt, &ids[1], ns).await;
    let (a, b): (Vec<&str>, Vec<&str>) = (ns_a.lines().collect(), ns_b.lines().collect());
    assert_eq!(a.len(), 3, "{ns_a}");
    assert_eq!(a[0], b[0], "one IPC namespace for the pod: {ns_a} / {ns_b}");
    assert_ne!(a[1], b[1], "a PID namespace each: {ns_a} / {ns_b}");
    assert_eq!((a[2], b[2]), ("pod1", "pod1"), "the pod's hostname");
    let (out, code) = exec(&mut rt, &ids[1], "echo to-stdout; exit 3").await;
    assert_eq!((out.as_str(), code), ("to-stdout\n", 3));
    // The pod's sysctl holds in its containers (the default is 0).
    let (v, _) = exec(&mut rt, &ids[1], "cat /proc/sys/kernel/shm_rmid_forced").await;
    assert_eq!(v.trim(), "1", "the pod's sysctl");
    // The pod's DNS config reaches the containers through CRI's resolv.conf bind; the
    // agent never writes over a file the spec mounts.
    let (resolv, _) = exec(&mut rt, &ids[0], "cat /etc/resolv.conf").await;
    assert!(resolv.contains("nameserver 10.10.10.10") && resolv.contains("pod.example"), "{resolv}");
    let sandbox_resolv =
        c.dir.path().join("root/io.containerd.grpc.v1.cri/sandboxes").join(&sandbox).join("resolv.conf");
    let host_copy = std::fs::read_to_string(&sandbox_resolv).expect("CRI's resolv.conf for the pod");
    assert!(host_copy.contains("nameserver 10.10.10.10"), "CRI's own file is intact: {host_copy}");

    // UpdateContainerResources reaches the container's cgroup in the guest.
    rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: ids[0].clone(),
        linux: Some(LinuxContainerResources { memory_limit_in_bytes: 100_663_296, ..Default::default() }),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}"));
    let (out, _) = exec(&mut rt, &ids[0], "c=$(cat /proc/self/cgroup); cat /sys/fs/cgroup${c#0::}/memory.max").await;
    assert_eq!(out.trim(), "100663296", "the new limit in the guest");
    let stats = rt
        .container_stats(ContainerStatsRequest { container_id: ids[0].clone() })
        .await
        .expect("ContainerStats")
        .into_inner()
        .stats
        .expect("stats");
    let mem = stats.memory.and_then(|m| m.usage_bytes).map(|v| v.value).unwrap_or(0);
    assert!(mem > 0, "the guest cgroup's memory usage reaches CRI: {mem}");

    // The container's stdout reached the CRI log file through the shim's FIFOs.
    let log = std::fs::read_to_string(logs.join("a.log")).unwrap_or_default();
    assert!(log.contains("started-a"), "CRI log: {log:?}");

    rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sandbox.clone() })
        .await
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", c.log()));
    rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox.clone() })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", c.log()));
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while !(c.sandbox_pids().is_empty() && c.shim_pids().is_empty() && c.mounts().is_empty()) {
        assert!(
            std::time::Instant::now() < until,
            "left after RemovePodSandbox: processes {:?} shims {:?} mounts {:?}",
            c.sandbox_pids(),
            c.shim_pids(),
            c.mounts()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!shim_socket.exists(), "the shim's socket {} is left", shim_socket.display());
}

/// The pod's life (RunPodSandbox, CreateContainer, StartContainer, ExecSync, Stop,
/// Remove) with one kill -9 at a random moment of it: the shim, the VMM, virtiofsd or
/// the vsock daemon. Then what kubelet does (stop and remove every pod), and the leak
/// check. Seeded like the other chaos rounds (`ISOLA_CHAOS_SEED`, `ISOLA_CHAOS_ROUNDS`).
#[tokio::test(flavor = "current_thread")]
async fn a_pod_leaves_nothing_after_kill_minus_nine_anywhere() {
    let c = Containerd::start();
    c.import_image("k8s.io");
    let logs = c.dir.path().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("logs");
    let mut rt = client(&c).await;
    let (mut rng, seed) = isola_e2e::chaos::Rng::from_env();
    eprintln!("chaos seed {seed} (ISOLA_CHAOS_SEED={seed} replays this run)");
    let mut next = move |n: u64| rng.below(n);
    let rounds = isola_e2e::chaos::rounds(4);
    let before = isola_e2e::leaks::snapshot();
    let mut points = Vec::new();
    for round in 0..rounds {
        let victim = ["shim", "vmm", "virtiofsd", "vsock"][next(4) as usize];
        let delay = Duration::from_millis(next(4000));
        let (shim_of, state) = (c.shim_pids(), c.isola_state.clone());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let life_done = done.clone();
        // From `delay` on, the first moment the victim exists (or never, if the life ends first).
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let want = match victim {
                "shim" => "containerd-shim-isola-v2",
                "vmm" => "qemu-system",
                "virtiofsd" => "virtiofsd",
                _ => "vhost-device-vsock",
            };
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let pid = if victim == "shim" {
                    isola_e2e::containerd::pids_with_args(&[want]).into_iter().find(|p| !shim_of.contains(p))
                } else {
                    isola_e2e::containerd::pids_with_args(&[want, state.to_str().unwrap_or("/")]).first().copied()
                };
                if let Some(p) = pid {
                    isola_e2e::containerd::kill9(p);
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        });
        let pod = pod_config(&logs);
        // The life; any step may fail once the kill landed.
        let life = async {
            let sandbox = rt
                .run_pod_sandbox(RunPodSandboxRequest { config: Some(pod.clone()), runtime_handler: "isola".into() })
                .await?
                .into_inner()
                .pod_sandbox_id;
            let id = rt
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: sandbox.clone(),
                    config: Some(container_config("a")),
                    sandbox_config: Some(pod.clone()),
                })
                .await?
                .into_inner()
                .container_id;
            rt.start_container(StartContainerRequest { container_id: id.clone() }).await?;
            // May fail once the kill landed: the life goes on to Stop and Remove.
            let req = ExecSyncRequest { container_id: id.clone(), cmd: vec!["echo".into(), "hi".into()], timeout: 30 };
            let _ = rt.exec_sync(req).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sandbox.clone() }).await?;
            rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox }).await?;
            Ok::<(), tonic::Status>(())
        };
        let outcome = tokio::time::timeout(Duration::from_secs(120), life).await;
        life_done.store(true, std::sync::atomic::Ordering::Relaxed);
        let killed = killer.join().unwrap_or(false);
        // kubelet's cleanup: every pod stopped and removed.
        for _ in 0..3 {
            let pods = rt.list_pod_sandbox(ListPodSandboxRequest::default()).await.map(|r| r.into_inner().items);
            let pods = pods.unwrap_or_default();
            if pods.is_empty() {
                break;
            }
            for p in pods {
                let _ = rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: p.id.clone() }).await;
                let _ = rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: p.id }).await;
            }
        }
        let point = format!("{}@{}ms", if killed { victim } else { "none" }, delay.as_millis() / 1000 * 1000);
        let left = isola_e2e::leaks::settle(&before, 30);
        let dirs: Vec<_> =
            std::fs::read_dir(&c.isola_state).into_iter().flatten().flatten().map(|e| e.path()).collect();
        assert!(
            left.is_empty() && dirs.is_empty() && c.mounts().is_empty(),
            "round {round} (seed {seed}), kill -9 of {point} (life: {outcome:?}): left {left:#?} {dirs:?} {:?}\n{}",
            c.mounts(),
            c.log()
        );
        points.push(point);
    }
    eprintln!("chaos CRI pod (seed {seed}): kill points {}", points.join(", "));
}
