//! The shim's Task API driven the way containerd drives it (its `start` command, then
//! ttrpc on the address it prints), for what `ctr` and CRI cannot ask for: a task that
//! is created and never started, then killed, or deleted under a pending Wait.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use containerd_shim::protos::api::{
    ConnectRequest, CreateTaskRequest, DeleteRequest, KillRequest, ShutdownRequest, StateRequest, WaitRequest,
};
use containerd_shim::protos::ttrpc::{context, Client};
use containerd_shim::protos::TaskClient;
use isola_e2e::containerd::Containerd;

const TIMEOUT: Duration = Duration::from_secs(60);

fn ctx() -> context::Context {
    context::with_timeout(TIMEOUT.as_nanos() as i64)
}

/// A bundle with busybox as its rootfs, running `sh -c 'sleep 1000'`.
fn bundle(dir: &Path) {
    std::fs::create_dir_all(dir).expect("bundle dir");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(isola_e2e::busybox_rootfs())
        .arg(dir.join("rootfs"))
        .status()
        .expect("cp rootfs");
    assert!(cp.success(), "copy the busybox rootfs");
    let mut spec = oci_spec::runtime::Spec::default();
    let mut process = spec.process().clone().expect("default process");
    process.set_args(Some(vec!["sh".into(), "-c".into(), "busybox sleep 1000".into()]));
    process.set_terminal(Some(false));
    spec.set_process(Some(process));
    let root = oci_spec::runtime::RootBuilder::default().path("rootfs").readonly(false).build().expect("root");
    spec.set_root(Some(root));
    spec.save(dir.join("config.json")).expect("config.json");
    // containerd makes this FIFO for the shim's log; a plain file keeps it for the asserts.
    std::fs::write(dir.join("log"), b"").expect("shim log");
}

fn shim_log(bundle: &Path) -> String {
    std::fs::read_to_string(bundle.join("log")).unwrap_or_default()
}

/// Runs the shim's `start` for `id` in `bundle` as containerd would; returns the
/// connected client and the shim's pid.
fn start_shim(c: &Containerd, id: &str, bundle: &Path) -> (TaskClient, i32) {
    let shim = isola_e2e::require_binary("containerd-shim-isola-v2", "cargo build");
    let out = Command::new(&shim)
        .args(["-namespace", "default", "-id", id, "-address"])
        .arg(&c.sock)
        .args(["-publish-binary", "containerd", "start"])
        .current_dir(bundle)
        .env("TTRPC_ADDRESS", format!("{}.ttrpc", c.sock.display()))
        .env("ISOLA_STATE_DIR", &c.isola_state)
        .output()
        .expect("shim start");
    assert!(out.status.success(), "shim start: {}", String::from_utf8_lossy(&out.stderr));
    let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let client = Client::connect(&address).unwrap_or_else(|e| panic!("connect {address}: {e}\n{}", shim_log(bundle)));
    let path = address.trim_start_matches("unix://").to_string();
    let pid = *isola_e2e::containerd::pids_with_args(&["containerd-shim-isola-v2", &path])
        .first()
        .unwrap_or_else(|| panic!("no shim serving {path}"));
    (TaskClient::new(client), pid)
}

fn create(task: &TaskClient, id: &str, bundle: &Path) -> u32 {
    let mut req = CreateTaskRequest::new();
    req.set_id(id.into());
    req.set_bundle(bundle.display().to_string());
    task.create(ctx(), &req).unwrap_or_else(|e| panic!("create {id}: {e}")).pid
}

/// containerd, a bundle for `id`, and that bundle's shim started: (containerd, bundle,
/// client, shim pid).
fn shim_for(id: &str) -> (Containerd, std::path::PathBuf, TaskClient, i32) {
    let c = Containerd::start();
    let dir = c.dir.path().join("bundles").join(id);
    bundle(&dir);
    let (task, shim) = start_shim(&c, id, &dir);
    (c, dir, task, shim)
}

fn wait(task: &TaskClient, id: &str) -> Result<u32, containerd_shim::protos::ttrpc::Error> {
    let mut req = WaitRequest::new();
    req.set_id(id.into());
    task.wait(ctx(), &req).map(|r| r.exit_status)
}

fn delete(task: &TaskClient, id: &str) -> u32 {
    let mut req = DeleteRequest::new();
    req.set_id(id.into());
    task.delete(ctx(), &req).unwrap_or_else(|e| panic!("delete {id}: {e}")).exit_status
}

/// Shutdown ends the shim (and its VM), and nothing is left.
fn shut_down_and_nothing_left(c: &Containerd, task: &TaskClient, shim: i32, id: &str) {
    shutdown(task, id);
    gone_within(shim, Duration::from_secs(20), "the shim after Shutdown");
    c.assert_nothing_left();
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

fn gone_within(pid: i32, within: Duration, what: &str) {
    let until = Instant::now() + within;
    while alive(pid) {
        assert!(Instant::now() < until, "{what} (pid {pid}) still running after {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn shutdown(task: &TaskClient, id: &str) {
    let mut req = ShutdownRequest::new();
    req.set_id(id.into());
    // The shim may go before it answers: either is fine, what counts is that it goes.
    let _ = task.shutdown(ctx(), &req);
}

/// Kill of a created task ends it: Wait returns 128+9, Delete reports it, the task's
/// pid (its host stand-in) is gone, and Shutdown ends the shim and its VM.
#[test]
fn killing_a_created_task_ends_it_and_wait_returns() {
    let (c, dir, task, shim) = shim_for("created-kill");
    let pid = create(&task, "created-kill", &dir);
    assert!(pid > 0 && alive(pid as i32), "create returns a live host pid, not {pid}");
    let mut kill = KillRequest::new();
    kill.set_id("created-kill".into());
    kill.set_signal(9);
    task.kill(ctx(), &kill).expect("kill of a created task");
    let exited = wait(&task, "created-kill").expect("wait after kill");
    assert_eq!(exited, 137, "a created task killed with 9 exits 128+9");
    gone_within(pid as i32, Duration::from_secs(10), "the task's pid");
    assert_eq!(delete(&task, "created-kill"), 137);
    shut_down_and_nothing_left(&c, &task, shim, "created-kill");
}

/// What a restarted containerd asks first: Connect names the task's own pid (its host
/// stand-in, the pid Create and State report), never the VMM's, whose cgroup is the
/// whole VM's.
#[test]
fn connect_reports_the_tasks_pid_not_the_vmms() {
    let (c, dir, task, shim) = shim_for("connect-pid");
    let pid = create(&task, "connect-pid", &dir);
    let mut req = ConnectRequest::new();
    req.set_id("connect-pid".into());
    let got = task.connect(ctx(), &req).expect("connect");
    let mut st = StateRequest::new();
    st.set_id("connect-pid".into());
    let state_pid = task.state(ctx(), &st).expect("state").pid;
    assert_eq!((got.task_pid, state_pid), (pid, pid), "Connect, State and Create agree");
    let argv0 = std::fs::read(format!("/proc/{}/cmdline", got.task_pid)).unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
    assert!(!argv0.contains("qemu") && !argv0.contains("isola-vmm"), "the task pid is a VMM: {argv0}");
    assert_eq!(got.shim_pid, shim as u32);
    delete(&task, "connect-pid");
    shut_down_and_nothing_left(&c, &task, shim, "connect-pid");
}

/// Delete of a created task wakes a Wait that is pending on it, and the shim still
/// shuts down (a handler blocked in Wait used to keep it alive for ever).
#[test]
fn deleting_a_created_task_wakes_a_pending_wait_and_the_shim_exits() {
    let (c, dir, task, shim) = shim_for("created-delete");
    create(&task, "created-delete", &dir);
    let waiter = {
        let task = task.clone();
        std::thread::spawn(move || wait(&task, "created-delete"))
    };
    // Let the Wait reach the shim before the Delete.
    std::thread::sleep(Duration::from_millis(500));
    delete(&task, "created-delete");
    let until = Instant::now() + Duration::from_secs(20);
    while !waiter.is_finished() {
        assert!(Instant::now() < until, "the pending Wait never returned after Delete");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = waiter.join().expect("waiter thread").expect("wait answers");
    assert_eq!(status, 137, "the deleted task's exit, as a kill: 128+9");
    shut_down_and_nothing_left(&c, &task, shim, "created-delete");
}

/// A shim whose `start` returned but which never gets a Create (its `start` was killed
/// half-way, or containerd died before asking: the chaos test's "shim@0ms") ends by
/// itself instead of lingering for ever.
#[test]
fn a_shim_that_is_never_asked_for_a_task_ends_by_itself() {
    let (c, _dir, _task, shim) = shim_for("orphan");
    assert!(alive(shim), "the shim serves after start");
    gone_within(shim, Duration::from_secs(45), "a shim that was never asked for a task");
    c.assert_nothing_left();
}
