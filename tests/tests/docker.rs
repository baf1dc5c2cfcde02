//! Docker runs isola containers through `isola-runtime` (`--runtime isola`): the
//! commands a user tries first, each in its own microVM, against a real dockerd.

use std::io::{Read, Write};
use std::time::Duration;

use isola_e2e::containerd::{kill9, pids_with_args};
use isola_e2e::docker::{with_terminal, Docker, IMAGE};

fn run(d: &Docker, args: &[&str]) -> isola_e2e::containerd::Out {
    let mut all = vec!["run", "--runtime", "isola"];
    all.extend_from_slice(args);
    d.docker(&all)
}

fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease").trim().to_string()
}

#[test]
fn docker_run_rm_prints_from_a_microvm_and_keeps_the_exit_code() {
    let d = Docker::start();
    let out = run(&d, &["--rm", IMAGE, "echo", "hi"]);
    assert_eq!((out.stdout.as_str(), out.code), ("hi\n", 0), "{}{}", out.stderr, d.log());
    let out = run(&d, &["--rm", IMAGE, "uname", "-r"]);
    assert_ne!(out.stdout.trim(), host_kernel(), "the guest's own kernel answers, not the host's");
    assert!(!out.stdout.trim().is_empty());
    let out = run(&d, &["--rm", IMAGE, "sh", "-c", "echo to-stderr >&2; exit 3"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("to-stderr"), "stderr kept apart: {:?}", out.stderr);
    let out = run(&d, &["--rm", IMAGE, "/no/such/program"]);
    assert_ne!(out.code, 0, "a missing program fails the run");
    d.assert_nothing_left();
}

/// The bundle's rootfs is the container's writable layer, as under runc: a write in the
/// microVM shows in `docker diff`, comes out with `docker cp`, goes into `docker commit`
/// and is there again on `docker start`.
#[test]
fn a_containers_writes_reach_diff_cp_commit_and_the_next_start() {
    let d = Docker::start();
    let script = "cat /f 2>/dev/null || echo first-run; echo persisted > /f; rm /etc/motd 2>/dev/null; true";
    let out = run(&d, &["--name", "w1", IMAGE, "sh", "-c", script]);
    assert_eq!((out.stdout.as_str(), out.code), ("first-run\n", 0), "{}{}", out.stderr, d.log());
    let diff = d.docker(&["diff", "w1"]);
    assert!(diff.stdout.lines().any(|l| l == "A /f"), "docker diff sees the write: {:?}", diff.stdout);
    let cp = d.docker(&["cp", "w1:/f", "-"]);
    assert!(cp.code == 0 && cp.stdout.contains("persisted"), "docker cp: {}{}", cp.stdout, cp.stderr);
    let start = d.docker(&["start", "-a", "w1"]);
    assert_eq!((start.stdout.as_str(), start.code), ("persisted\n", 0), "the next start sees it: {}", start.stderr);
    let commit = d.docker(&["commit", "w1", "isola-e2e-committed"]);
    assert_eq!(commit.code, 0, "{}", commit.stderr);
    let out = run(&d, &["--rm", "isola-e2e-committed", "cat", "/f"]);
    assert_eq!((out.stdout.as_str(), out.code), ("persisted\n", 0), "the committed image has it: {}", out.stderr);
    let out = run(&d, &["--rm", "--read-only", IMAGE, "sh", "-c", "touch /g"]);
    assert!(out.code != 0 && out.stderr.contains("Read-only file system"), "--read-only: {}", out.stderr);
    assert_eq!(d.docker(&["rm", "w1"]).code, 0);
    assert_eq!(d.docker(&["rmi", "isola-e2e-committed"]).code, 0);
    d.assert_nothing_left();
}

#[test]
fn docker_run_it_gets_a_terminal_with_the_callers_size() {
    let d = Docker::start();
    let cmd = format!("stty rows 33 cols 101; {} run --runtime isola -it --rm {IMAGE} sh", d.command_line());
    let out = with_terminal(&cmd, "stty size; tty; echo typed-$((6*7))\nexit\n", Duration::from_secs(8));
    assert!(out.contains("33 101"), "the terminal's size reached the guest: {out:?}");
    assert!(out.contains("/dev/pts/"), "a pty in the guest: {out:?}");
    assert!(out.contains("typed-42"), "input went in, output came out: {out:?}");
    d.assert_nothing_left();
}

#[test]
fn detached_containers_exec_log_pause_stat_stop_and_go() {
    let d = Docker::start();
    let out = run(&d, &["-d", "--name", "c1", IMAGE, "sh", "-c", "echo started; exec sleep 300"]);
    assert_eq!(out.code, 0, "{}{}", out.stderr, d.log());
    let status = |d: &Docker| d.docker(&["ps", "-a", "--filter", "name=c1", "--format", "{{.Status}}"]).stdout;
    assert!(status(&d).starts_with("Up"), "{}", status(&d));
    let out = d.docker(&["exec", "c1", "sh", "-c", "echo exec-out; echo exec-err >&2; exit 6"]);
    assert_eq!((out.stdout.as_str(), out.code), ("exec-out\n", 6), "{}", out.stderr);
    assert!(out.stderr.contains("exec-err"));
    let cmd = format!("{} exec -it c1 sh", d.command_line());
    let tty = with_terminal(&cmd, "tty; echo exec-tty-$((2+3))\nexit\n", Duration::from_secs(3));
    assert!(tty.contains("/dev/pts/") && tty.contains("exec-tty-5"), "{tty:?}");
    // An exec's relay killed with -9: its process in the guest goes with it.
    assert_eq!(d.docker(&["exec", "-d", "c1", "sleep", "301"]).code, 0);
    let in_guest = |d: &Docker| d.docker(&["exec", "c1", "ps"]).stdout.contains("sleep 301");
    let until = std::time::Instant::now() + Duration::from_secs(20);
    let relays = loop {
        let r = pids_with_args(&["__isola relay", d.dir.path().to_str().expect("path")]);
        if (!r.is_empty() && in_guest(&d)) || std::time::Instant::now() > until {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(relays.len(), 1, "one relay for the detached exec: {relays:?}");
    kill9(relays[0]);
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while in_guest(&d) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!in_guest(&d), "the exec'd process ended with its relay");
    let logs = d.docker(&["logs", "c1"]);
    assert_eq!(logs.stdout, "started\n", "{}", logs.stderr);
    assert_eq!(d.docker(&["pause", "c1"]).code, 0);
    assert!(status(&d).contains("Paused"), "{}", status(&d));
    assert_eq!(d.docker(&["unpause", "c1"]).code, 0);
    assert!(!status(&d).contains("Paused"), "{}", status(&d));
    let stats = d.docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "c1"]);
    assert!(stats.stdout.contains("MiB /"), "the VM's memory is accounted: {:?} {}", stats.stdout, stats.stderr);
    let top = d.docker(&["top", "c1"]);
    assert!(top.stdout.contains("__isola keeper"), "the host process Docker waits on: {}", top.stdout);
    assert_eq!(d.docker(&["kill", "-s", "USR1", "c1"]).code, 0, "a signal is delivered");
    let stop = d.docker(&["stop", "-t", "1", "c1"]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(status(&d).starts_with("Exited (137)"), "{}", status(&d));
    assert_eq!(d.docker(&["rm", "c1"]).code, 0);
    assert!(status(&d).is_empty());
    d.assert_nothing_left();
}

#[test]
fn env_workdir_user_binds_and_named_volumes_reach_the_container() {
    let d = Docker::start();
    let bind = d.dir.path().join("bind");
    std::fs::create_dir_all(&bind).expect("bind dir");
    std::fs::write(bind.join("f"), "from-the-host\n").expect("file");
    let spec = format!("{}:/mnt/b", bind.display());
    let out = run(
        &d,
        &[
            "--rm",
            "-e",
            "FOO=bar",
            "-w",
            "/tmp",
            "-u",
            "1000:1000",
            "-v",
            &spec,
            IMAGE,
            "sh",
            "-c",
            "echo $FOO; pwd; id -u; id -g; cat /mnt/b/f",
        ],
    );
    assert_eq!(out.stdout, "bar\n/tmp\n1000\n1000\nfrom-the-host\n", "{}", out.stderr);
    let out = run(&d, &["--rm", "-v", &spec, IMAGE, "sh", "-c", "echo from-the-guest > /mnt/b/g"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(bind.join("g")).expect("written through"), "from-the-guest\n");
    assert_eq!(d.docker(&["volume", "create", "v1"]).code, 0);
    let out = run(&d, &["--rm", "-v", "v1:/data", IMAGE, "sh", "-c", "echo kept > /data/x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(&d, &["--rm", "-v", "v1:/data", IMAGE, "cat", "/data/x"]);
    assert_eq!(out.stdout, "kept\n", "a named volume outlives its first VM: {}", out.stderr);
    d.assert_nothing_left();
}

#[test]
fn memory_and_cpus_size_the_vm() {
    let d = Docker::start();
    let mem = |args: &[&str]| {
        let mut a = vec!["--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[IMAGE, "sh", "-c", "grep MemTotal /proc/meminfo; nproc"]);
        let out = run(&d, &a);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let kib = isola_e2e::containerd::mem_total_kib(&out.stdout);
        let cpus: u32 = out.stdout.lines().last().and_then(|l| l.trim().parse().ok()).expect("nproc");
        (kib, cpus)
    };
    let (small, one) = mem(&[]);
    let (big, two) = mem(&["--memory", "600m", "--cpus", "2"]);
    assert!(big > small + 200 * 1024, "--memory 600m grows the VM: {small} KiB -> {big} KiB");
    assert!(big > 500 * 1024, "{big} KiB");
    assert_eq!((one, two), (1, 2), "--cpus 2 gives the VM two vCPUs");
    d.assert_nothing_left();
}

/// `docker update -m` reaches the container's own VM: the guest has less memory to
/// use (its balloon takes the rest), work past the limit is killed in the container,
/// and growing back lets it through.
#[test]
fn docker_update_resizes_the_running_containers_vm() {
    let d = Docker::start();
    let out = run(&d, &["-d", "--name", "upd", "--memory", "256m", IMAGE, "sleep", "100000"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let available = || {
        let out = d.docker(&["exec", "upd", "grep", "MemAvailable", "/proc/meminfo"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).expect("MemAvailable")
    };
    let dd =
        |mib: u64| d.docker(&["exec", "upd", "dd", "if=/dev/zero", "of=/dev/null", &format!("bs={mib}M"), "count=1"]);
    let roomy = available();
    let out = d.docker(&["update", "--memory", "64m", "upd"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tight = available();
    assert!(tight + (150 << 10) <= roomy, "the guest gave its memory up: {roomy} → {tight} KiB");
    assert_ne!(dd(100).code, 0, "100 MiB at once is past a 64 MiB limit");
    let out = d.docker(&["update", "--memory", "250m", "upd"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(available() >= tight + (150 << 10), "and got it back");
    let out = dd(200);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = d.docker(&["rm", "-f", "upd"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    d.assert_nothing_left();
}

#[test]
fn the_default_bridge_network_and_a_published_port_reach_the_vm() {
    let d = Docker::start();
    let www = d.dir.path().join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("index.html"), "served-from-the-vm\n").expect("index");
    let vol = format!("{}:/www:ro", www.display());
    let out = run(
        &d,
        &[
            "-d",
            "--name",
            "web",
            "-p",
            "127.0.0.1:18481:80",
            "-v",
            &vol,
            IMAGE,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    assert_eq!(out.code, 0, "{}{}", out.stderr, d.log());
    let ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]).stdout.trim().to_string();
    assert!(ip.starts_with("172."), "Docker's bridge address: {ip:?}");
    let addr = d.docker(&["exec", "web", "ip", "-4", "-o", "addr", "show", "eth0"]).stdout;
    assert!(addr.contains(&format!("inet {ip}/")), "the guest has Docker's address: {addr}");
    let mut body = String::new();
    for _ in 0..50 {
        body.clear();
        if let Ok(mut s) = std::net::TcpStream::connect("127.0.0.1:18481") {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let _ = s.read_to_string(&mut body);
            if body.contains("served-from-the-vm") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(body.contains("served-from-the-vm"), "-p reached the VM's server: {body:?}");
    let out =
        d.docker(&["run", "--runtime", "isola", "--rm", IMAGE, "wget", "-q", "-O", "-", &format!("http://{ip}/")]);
    assert_eq!(out.stdout, "served-from-the-vm\n", "container to container on the bridge: {}", out.stderr);
    assert_eq!(d.docker(&["rm", "-f", "web"]).code, 0);
    d.assert_nothing_left();
}

#[test]
fn kill_9_of_the_keeper_or_the_vmm_is_an_exit_and_leaves_nothing() {
    let d = Docker::start();
    for victim in ["keeper", "vmm"] {
        let out = run(&d, &["-d", "--name", victim, IMAGE, "sleep", "300"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let id = d.docker(&["inspect", "-f", "{{.Id}}", victim]).stdout.trim().to_string();
        let pids = match victim {
            "keeper" => pids_with_args(&["__isola keeper", &id]),
            _ => pids_with_args(&["qemu-system", d.isola_state.to_str().expect("path")]),
        };
        assert_eq!(pids.len(), 1, "one {victim}: {pids:?}");
        kill9(pids[0]);
        let wait = d.docker(&["wait", victim]);
        let code: i32 =
            wait.stdout.trim().parse().unwrap_or_else(|_| panic!("docker wait: {} {}", wait.stdout, wait.stderr));
        assert_ne!(code, 0, "{victim} killed: the container exited with a failure");
        let status = d.docker(&["ps", "-a", "--filter", &format!("name={victim}"), "--format", "{{.Status}}"]).stdout;
        assert!(status.starts_with("Exited"), "{victim}: {status}");
        assert_eq!(d.docker(&["rm", victim]).code, 0);
        d.assert_nothing_left();
    }
}

#[test]
fn bench_docker_measures_isola_and_runc_in_the_same_run() {
    let d = Docker::start();
    let json = d.dir.path().join("docker.json");
    let host = format!("unix://{}", d.sock.display());
    let (out, err, code) = isola_e2e::isola(
        &[
            "bench",
            "docker",
            "--host",
            &host,
            "--docker",
            "/usr/bin/docker",
            "--image",
            IMAGE,
            "-n",
            "2",
            "--json",
            json.to_str().expect("path"),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("docker run --rm isola-busybox:test true"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "isola and runc: {v}");
    assert_eq!(results[0]["runtime"], "isola");
    assert_eq!(results[1]["runtime"], "runc");
    for r in results {
        assert_eq!(r["samples_us"].as_array().map(Vec::len), Some(2), "{r}");
    }
    d.assert_nothing_left();
}
