//! containerd (Debian's, started by the test) running containers in isola microVMs
//! through `containerd-shim-isola-v2`, driven with `ctr` as a user would.

use std::time::{Duration, Instant};

use isola_e2e::containerd::{kill9, Containerd, Out, IMAGE, RUNTIME};

fn run(c: &Containerd, extra: &[&str], name: &str, cmd: &[&str]) -> Out {
    let mut args = vec!["run", "--runtime", RUNTIME];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, name]);
    args.extend_from_slice(cmd);
    c.ctr(&args)
}

fn ok(o: &Out, what: &str) {
    assert_eq!(o.code, 0, "{what}: {}{}", o.stdout, o.stderr);
}

/// `ctr task ls` status of `id` (RUNNING, STOPPED, PAUSED…).
fn status(c: &Containerd, id: &str) -> String {
    c.ctr(&["task", "ls"])
        .stdout
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
        })
        .unwrap_or_default()
}

fn wait_status(c: &Containerd, id: &str, want: &str, within: Duration) {
    let until = Instant::now() + within;
    while status(c, id) != want {
        assert!(Instant::now() < until, "{id} never became {want} (is {:?})\n{}", status(c, id), c.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ctr run -d` of a shell loop (`script` before it), running when this returns.
fn run_detached(c: &Containerd, id: &str, script: &str) {
    run_detached_with(c, &[], id, script)
}

fn run_detached_with(c: &Containerd, opts: &[&str], id: &str, script: &str) {
    let cmd = format!("{script} while true; do busybox sleep 1; done");
    let mut all = vec!["-d"];
    all.extend_from_slice(opts);
    ok(&run(c, &all, id, &["sh", "-c", &cmd]), "run -d");
    wait_status(c, id, "RUNNING", Duration::from_secs(30));
}

/// Signals the task, waits for it to stop, and checks the exit code ctr reports on delete.
fn kill_and_remove(c: &Containerd, id: &str, kill: &[&str], code: i32) {
    let mut args = vec!["task", "kill"];
    args.extend_from_slice(kill);
    args.push(id);
    ok(&c.ctr(&args), "kill");
    wait_status(c, id, "STOPPED", Duration::from_secs(30));
    let d = c.ctr(&["task", "delete", id]);
    assert!(d.stderr.contains(&format!("exit code {code}")), "{id}: {}{}", d.stdout, d.stderr);
    ok(&c.ctr(&["container", "rm", id]), "container rm");
}

/// What `ctr events` printed while `f` ran: the events containerd got from the shim.
fn events_during(c: &Containerd, f: impl FnOnce()) -> String {
    let mut events = c.ctr_command().arg("events").stdout(std::process::Stdio::piped()).spawn().expect("ctr events");
    // No readiness signal from `ctr events`: give it time to subscribe, and the events time to arrive.
    std::thread::sleep(Duration::from_secs(1));
    f();
    std::thread::sleep(Duration::from_secs(1));
    let _ = events.kill();
    String::from_utf8_lossy(&events.wait_with_output().expect("events output").stdout).into_owned()
}

#[test]
fn ctr_run_prints_output_and_exit_codes_and_signals_propagate() {
    let c = Containerd::start();
    c.import_image("default");
    let out = events_during(&c, || {
        let o = run(&c, &["--rm"], "echo", &["echo", "hi"]);
        ok(&o, "echo hi");
        assert_eq!(o.stdout, "hi\n");
    });
    let seen: Vec<String> = out
        .lines()
        .filter(|l| l.contains("/tasks/") && l.contains("\"echo\""))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")).map(String::from))
        .collect();
    assert_eq!(seen, ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"], "task events in order");
    // Out of memory: the guest's OOM killer ends the container's init; 137, and TaskOOM.
    let out = events_during(&c, || {
        let hog = "BEGIN { s = \"x\"; while (1) s = s s }";
        let o = run(&c, &["--rm", "--memory-limit", "33554432"], "oom", &["busybox", "awk", hog]);
        assert_eq!(o.code, 137, "{}{}", o.stdout, o.stderr);
    });
    let oom = out.lines().position(|l| l.contains("/tasks/oom") && l.contains("\"oom\""));
    let exit = out.lines().position(|l| l.contains("/tasks/exit") && l.contains("\"oom\""));
    assert!(oom.is_some() && oom < exit, "TaskOOM before TaskExit:\n{out}");
    // The image's own command and config (env, workdir) apply when none is given.
    let o = run(&c, &["--rm"], "imagecmd", &[]);
    ok(&o, "image command");
    assert_eq!(o.stdout, "hello from the image\nfrom-image-config\n");
    let o = run(&c, &["--rm"], "exit42", &["sh", "-c", "echo out; echo err >&2; exit 42"]);
    assert_eq!(o.code, 42, "{}", o.stderr);
    assert_eq!(o.stdout, "out\n");
    assert!(o.stderr.contains("err"), "{}", o.stderr);
    // Killed by a signal: 128 + 9, as with runc; `--all` reaches an exec'd process too.
    run_detached(&c, "sig", "");
    let e = c.ctr(&["task", "exec", "-d", "--exec-id", "bg", "sig", "busybox", "sleep", "1000"]);
    ok(&e, "exec -d");
    kill_and_remove(&c, "sig", &["--all", "-s", "SIGKILL"], 137);
    c.assert_nothing_left();
}

#[test]
fn detached_task_exec_ps_pause_resume_metrics_term_and_delete() {
    let c = Containerd::start();
    c.import_image("default");
    run_detached_with(&c, &["--memory-limit", "268435456"], "web", "trap 'echo got-term; exit 99' TERM;");
    let e = c.ctr(&["task", "exec", "--exec-id", "x1", "web", "sh", "-c", "echo from-exec; exit 7"]);
    assert_eq!((e.code, e.stdout.as_str()), (7, "from-exec\n"), "{}", e.stderr);
    let ps = c.ctr(&["task", "ps", "web"]);
    ok(&ps, "task ps");
    assert!(ps.stdout.lines().count() >= 2, "a pid listed: {}", ps.stdout);
    ok(&c.ctr(&["task", "pause", "web"]), "pause");
    assert_eq!(status(&c, "web"), "PAUSED");
    ok(&c.ctr(&["task", "resume", "web"]), "resume");
    assert_eq!(status(&c, "web"), "RUNNING");
    let m = c.ctr(&["task", "metrics", "web"]);
    ok(&m, "metrics");
    let usage = m.stdout.lines().find(|l| l.starts_with("memory.usage ")).expect("memory.usage line");
    let bytes: u64 = usage.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number");
    assert!(bytes > 0, "the guest's cgroup reports memory: {}", m.stdout);
    assert!(m.stdout.contains("pids.current"), "{}", m.stdout);
    let limit = m.stdout.lines().find(|l| l.starts_with("memory.usage_limit ")).unwrap_or_default();
    assert!(limit.contains("268435456"), "the spec's limit is the guest cgroup's: {}", m.stdout);
    // The trap's own exit code comes back.
    kill_and_remove(&c, "web", &["-s", "SIGTERM"], 99);
    c.assert_nothing_left();
}

#[test]
fn env_cwd_bind_mounts_and_a_rootfs_directory() {
    let c = Containerd::start();
    c.import_image("default");
    let vol = c.dir.path().join("vol");
    std::fs::create_dir_all(&vol).expect("vol");
    std::fs::write(vol.join("f"), "from-the-host\n").expect("write");
    let mount = format!("type=bind,src={},dst=/vol,options=rbind:ro", vol.display());
    let o = run(
        &c,
        &["--rm", "--env", "FOO=bar", "--cwd", "/etc", "--mount", &mount],
        "opts",
        &["sh", "-c", "echo $FOO; pwd; cat /vol/f; echo x > /vol/g || echo read-only"],
    );
    ok(&o, "run with options");
    assert_eq!(o.stdout, "bar\n/etc\nfrom-the-host\nread-only\n", "{}", o.stderr);
    // A memory limit sizes the VM: the limit plus headroom for the guest's kernel and agent.
    let o = run(&c, &["--rm", "--memory-limit", "536870912"], "mem", &["cat", "/proc/meminfo"]);
    ok(&o, "run with a memory limit");
    let total_kib = isola_e2e::containerd::mem_total_kib(&o.stdout);
    assert!(total_kib > 512 * 1024 && total_kib <= 640 * 1024, "VM of 512 + 128 MiB: MemTotal {total_kib} KiB");
    let rootfs = isola_e2e::busybox_rootfs();
    let o = c.ctr(&[
        "run",
        "--runtime",
        RUNTIME,
        "--rm",
        "--rootfs",
        rootfs.to_str().expect("path"),
        "dir",
        "sh",
        "-c",
        "echo rootfs-dir; exit 3",
    ]);
    assert_eq!((o.code, o.stdout.as_str()), (3, "rootfs-dir\n"), "{}", o.stderr);
    c.assert_nothing_left();
}

#[test]
fn a_terminal_session_through_script() {
    let c = Containerd::start();
    c.import_image("default");
    let cmd =
        format!("ctr -a {} run --runtime {RUNTIME} --rm -t {IMAGE} tty1 sh -c 'busybox tty; exit 5'", c.sock.display());
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/0"), "a terminal inside: {text}");
    assert_eq!(out.status.code(), Some(5), "{text}");
    c.assert_nothing_left();
}

#[test]
fn killing_the_vmm_or_the_shim_ends_the_task_and_leaves_nothing() {
    let c = Containerd::start();
    c.import_image("default");
    // The VMM dies: the task is reported exited, and ctr's cleanup removes the rest.
    run_detached(&c, "v", "");
    let vmm: Vec<i32> = c
        .sandbox_pids()
        .into_iter()
        .filter(|p| {
            use isola_sandbox::{backend::vmm_exe, state::process_matches, HypervisorKind};
            [HypervisorKind::Qemu, HypervisorKind::IsolaVmm].iter().any(|k| process_matches(*p, vmm_exe(*k)))
        })
        .collect();
    // A jailed isola-vmm is two processes of that name: its supervisor (on record,
    // whose death kills the VMM) and the VMM under it. The outermost one counts.
    let parent = |p: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|x| x.parse::<i32>().ok())
    };
    let vmm: Vec<i32> = vmm.iter().copied().filter(|p| !parent(*p).is_some_and(|pp| vmm.contains(&pp))).collect();
    assert_eq!(vmm.len(), 1, "one VMM for the container: {:?}", c.sandbox_pids());
    kill9(vmm[0]);
    wait_status(&c, "v", "STOPPED", Duration::from_secs(30));
    ok(&c.ctr(&["task", "delete", "v"]), "task delete");
    ok(&c.ctr(&["container", "rm", "v"]), "container rm");
    c.assert_nothing_left();
    // The shim dies: containerd runs `shim delete`, which removes the VM and its mounts.
    run_detached(&c, "s", "");
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "one shim: {shims:?}");
    let socket = Containerd::shim_socket(shims[0]).expect("the shim's -socket");
    assert!(socket.exists(), "{}", socket.display());
    kill9(shims[0]);
    let until = Instant::now() + Duration::from_secs(30);
    while !c.ctr(&["task", "ls"]).stdout.lines().skip(1).all(|l| !l.starts_with("s ") || l.contains("STOPPED")) {
        assert!(Instant::now() < until, "task s still listed as live: {}", c.ctr(&["task", "ls"]).stdout);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.ctr(&["task", "delete", "s"]);
    ok(&c.ctr(&["container", "rm", "s"]), "container rm");
    c.assert_nothing_left();
    assert!(c.shim_pids().is_empty(), "shims left: {:?}", c.shim_pids());
    assert!(!socket.exists(), "the dead shim's socket {} is left", socket.display());
    // The guest powers itself off: the task exits and cleanup leaves nothing.
    run_detached(&c, "g", "");
    let uds = std::fs::read_dir(&c.isola_state)
        .expect("isola state")
        .flatten()
        .map(|e| e.path().join(isola_sandbox::sandbox::VSOCK_DIR).join("vsock.sock"))
        .find(|p| p.exists())
        .expect("the sandbox's vsock socket");
    let mut agent = isola_protocol::client::AgentClient::connect(&uds, Duration::from_secs(10)).expect("agent");
    let _ = agent.call(&isola_protocol::Request::Shutdown);
    wait_status(&c, "g", "STOPPED", Duration::from_secs(30));
    ok(&c.ctr(&["task", "delete", "g"]), "task delete");
    ok(&c.ctr(&["container", "rm", "g"]), "container rm");
    c.assert_nothing_left();
}

/// `isola bench ctr` against this containerd: isola's shim and runc, same run. Only
/// that it measures both; the figures are printed (ISOLA_CTR_BENCH_RUNS sets the runs).
/// On containerd 2.3, isola alone: Debian's runc shim (1.6's) misreads 2.3's bootstrap
/// stdin; the 1.6 run of the same step gives the peer figure.
#[test]
fn bench_ctr_measures_isola_and_runc_in_the_same_run() {
    let c = Containerd::start();
    c.import_image("default");
    isola_e2e::require_binary("runc", "apt-get install runc");
    let compare = match c.flavor {
        isola_e2e::containerd::Flavor::V2_3 => "none",
        isola_e2e::containerd::Flavor::Debian => "io.containerd.runc.v2",
    };
    let runs = std::env::var("ISOLA_CTR_BENCH_RUNS").unwrap_or_else(|_| "3".into());
    let json = c.dir.path().join("ctr.json");
    let (out, err, code) = isola_e2e::isola(
        &[
            "bench",
            "ctr",
            "--address",
            c.sock.to_str().expect("path"),
            "--image",
            IMAGE,
            "-n",
            &runs,
            "--json",
            json.to_str().expect("path"),
            "--compare",
            compare,
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    println!("{out}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), if compare == "none" { 1 } else { 2 }, "{r}");
    for res in results {
        let n = res["samples_us"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(n.to_string(), runs, "{res}");
    }
    assert!(out.contains("io.containerd.isola.v2") && (compare == "none" || out.contains(compare)), "{out}");
    c.assert_nothing_left();
}

/// The task's host cgroup (its spec's `cgroupsPath`) holds the VM: the VMM and every
/// helper run in it, with the VM's size plus overhead as its memory limit; its pid is
/// a host process (the stand-in) that ends with the task; the cgroup goes on delete.
#[test]
fn the_vm_runs_in_the_tasks_cgroup_and_its_pid_lives_as_long_as_the_task() {
    let c = Containerd::start();
    c.import_image("default");
    run_detached(&c, "cgpath", "");
    let info: serde_json::Value = serde_json::from_str(&c.ctr(&["container", "info", "cgpath"]).stdout).expect("info");
    let path = info["Spec"]["linux"]["cgroupsPath"].as_str().expect("ctr sets a cgroupsPath").to_string();
    let memory_cgroup = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.splitn(3, ':').collect();
                (f.len() == 3 && (f[1] == "memory" || f[1].is_empty())).then(|| f[2].to_string())
            })
            .unwrap_or_default()
    };
    let vm = c.sandbox_pids();
    assert!(!vm.is_empty(), "the VM's processes");
    for pid in &vm {
        assert_eq!(memory_cgroup(*pid), path, "process {pid} runs in the task's cgroup");
    }
    let base = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        std::path::PathBuf::from("/sys/fs/cgroup")
    } else {
        std::path::PathBuf::from("/sys/fs/cgroup/memory")
    };
    let dir = base.join(path.trim_start_matches('/'));
    assert!(dir.is_dir(), "{}", dir.display());
    // The task's pid is a host process, and not the VMM.
    let line = c.ctr(&["task", "ls"]).stdout.lines().find(|l| l.starts_with("cgpath ")).unwrap_or_default().to_string();
    let pid: i32 = line.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("a pid");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "task pid {pid} exists on the host");
    assert!(!vm.contains(&pid), "the task's pid is not the VMM's");
    kill_and_remove(&c, "cgpath", &["-s", "SIGKILL"], 137);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the task's pid ended with it");
    c.assert_nothing_left();
    assert!(!dir.exists(), "the cgroup {} is removed with the VM", dir.display());
}

/// A bind mount with `rslave` propagation: what the host mounts under its (shared)
/// source after the container started shows in the container; with the default
/// (private) it does not. `rshared` gives the same (a guest's mounts cannot reach the host).
#[test]
fn a_host_mount_made_after_start_reaches_an_rslave_volume() {
    let c = Containerd::start();
    c.import_image("default");
    let vol = c.dir.path().join("propagated");
    std::fs::create_dir_all(&vol).expect("vol");
    let cmd = |args: &[&str]| {
        let o = std::process::Command::new(args[0]).args(&args[1..]).output().expect(args[0]);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let v = vol.to_str().expect("path");
    // Propagation needs a shared source (systemd makes / shared; here it is made so).
    cmd(&["mount", "--bind", v, v]);
    cmd(&["mount", "--make-shared", v]);
    std::fs::create_dir_all(vol.join("sub")).expect("sub");
    let slave = format!("type=bind,src={v},dst=/vol,options=rbind:rslave");
    let private = format!("type=bind,src={v},dst=/vol,options=rbind");
    run_detached_with(&c, &["--mount", &slave], "prop", "");
    run_detached_with(&c, &["--mount", &private], "priv", "");
    cmd(&["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", &format!("{v}/sub")]);
    std::fs::write(vol.join("sub/late"), "mounted-later\n").expect("write");
    let read = |id: &str| c.ctr(&["task", "exec", "--exec-id", &format!("r{id}"), id, "cat", "/vol/sub/late"]).stdout;
    let until = Instant::now() + Duration::from_secs(10);
    while read("prop") != "mounted-later\n" {
        assert!(Instant::now() < until, "the rslave volume never showed the host's later mount");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(read("priv"), "", "the private volume does not see it");
    let _ = std::process::Command::new("umount").arg(format!("{v}/sub")).status();
    kill_and_remove(&c, "prop", &["-s", "SIGKILL"], 137);
    kill_and_remove(&c, "priv", &["-s", "SIGKILL"], 137);
    let _ = std::process::Command::new("umount").args(["-l", v]).status();
    c.assert_nothing_left();
}

/// A program that is not in the image fails `ctr run` at create (by name, as runc's
/// does) and leaves nothing.
#[test]
fn a_missing_program_fails_at_create() {
    let c = Containerd::start();
    c.import_image("default");
    let o = run(&c, &["--rm"], "missing", &["/no/such/program"]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert!(o.stderr.contains("/no/such/program"), "the error names the program: {}", o.stderr);
    let _ = c.ctr(&["container", "rm", "missing"]);
    c.assert_nothing_left();
}

/// containerd crashes and comes back while a task runs: it reconnects to the shim,
/// the task is still RUNNING and usable, and its exit reaches containerd as an event
/// (the shim's publisher reconnects instead of failing with EPIPE for ever).
#[test]
fn events_reach_containerd_after_it_restarts() {
    let mut c = Containerd::start();
    c.import_image("default");
    run_detached_with(&c, &[], "survivor", "trap 'exit 3' TERM;");
    let task_pid = |c: &Containerd| {
        let ls = c.ctr(&["task", "ls"]).stdout;
        ls.lines().find(|l| l.starts_with("survivor ")).and_then(|l| l.split_whitespace().nth(1)).map(String::from)
    };
    let before = task_pid(&c).expect("the task's pid");
    c.restart();
    wait_status(&c, "survivor", "RUNNING", Duration::from_secs(30));
    // The pid containerd learns again (from the shim's Connect) is the task's, not the VMM's.
    assert_eq!(task_pid(&c).as_deref(), Some(before.as_str()), "the task's pid survives the restart");
    let cmdline = std::fs::read(format!("/proc/{before}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(!cmdline.contains("qemu") && !cmdline.contains("isola-vmm"), "the task pid is a VMM: {cmdline}");
    let e = c.ctr(&["task", "exec", "--exec-id", "after", "survivor", "sh", "-c", "echo still-here"]);
    assert_eq!((e.code, e.stdout.as_str()), (0, "still-here\n"), "exec after the restart: {}", e.stderr);
    let events = events_during(&c, || {
        ok(&c.ctr(&["task", "kill", "-s", "SIGTERM", "survivor"]), "kill");
        wait_status(&c, "survivor", "STOPPED", Duration::from_secs(30));
    });
    let exit = events.lines().find(|l| l.contains("/tasks/exit") && l.contains("survivor"));
    assert!(exit.is_some(), "no /tasks/exit for the task after the restart:\n{events}\n{}", c.log());
    assert!(!c.log().contains("giving up on this event"), "the shim dropped an event:\n{}", c.log());
    let d = c.ctr(&["task", "delete", "survivor"]);
    assert!(d.stderr.contains("exit code 3"), "{}{}", d.stdout, d.stderr);
    ok(&c.ctr(&["container", "rm", "survivor"]), "container rm");
    c.assert_nothing_left();
}
