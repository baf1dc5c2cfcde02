//! Scenarios for the task state machine and the order of its events, on a fake guest
//! whose processes exit when the test says so. Bundles are real directories; rootfs
//! binds are real mounts (as root), undone by delete.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use isola_protocol::{ContainerStats, ExitStatus, Request, RootfsSource};
use isola_sandbox::Streams;
use oci_spec::runtime::{LinuxResources, Process, Spec};

use crate::error::TaskError;
use crate::event::testing::Recorder;
use crate::guest::{BootRequest, Booter, Guest};
use crate::pod::{CreateRequest, Pod, Status, VM_GONE_EXIT};
use crate::spec::{CONTAINER_TYPE, SANDBOX_ID};

type Key = (String, Option<String>);

#[derive(Default)]
struct FakeGuest {
    calls: Mutex<Vec<Request>>,
    exits: Mutex<HashMap<Key, ExitStatus>>,
    exited: Condvar,
    dead: AtomicBool,
    stopped: AtomicBool,
    /// Signals fail as for a process that has just ended.
    signal_fails: AtomicBool,
    /// What the guest lists as the container's processes (guest pids).
    guest_pids: Mutex<Vec<i32>>,
    shared: PathBuf,
    /// Serials of the disks it was "booted" with.
    disks: Mutex<Vec<String>>,
}

impl FakeGuest {
    fn exit(&self, id: &str, exec: Option<&str>, code: i32, oom: bool) {
        let mut e = self.exits.lock().expect("exits");
        e.insert((id.into(), exec.map(Into::into)), ExitStatus { code, signal: None, oom_killed: oom });
        self.exited.notify_all();
    }

    fn ops(&self) -> Vec<String> {
        let calls = self.calls.lock().expect("calls");
        calls.iter().map(|r| serde_json::to_value(r).expect("json")["op"].as_str().unwrap_or("?").to_string()).collect()
    }
}

impl FakeGuest {
    /// Records each call as the protocol request the real guest would get.
    fn record(&self, req: Request) {
        self.calls.lock().expect("calls").push(req);
    }
}

impl Guest for FakeGuest {
    fn create(
        &self,
        id: &str,
        spec: &Spec,
        disk: Option<&isola_sandbox::options::DiskAttach>,
    ) -> Result<(), TaskError> {
        let rootfs = match disk {
            Some(d) => {
                RootfsSource::Disk { serial: d.serial.clone(), fstype: d.fstype.clone(), in_place: !d.read_only }
            }
            None => RootfsSource::GuestPath { path: format!("/run/isola/shared/{id}/rootfs"), in_place: true },
        };
        self.record(Request::CreateContainer { id: id.into(), spec: Box::new(spec.clone()), rootfs });
        Ok(())
    }

    fn start(&self, id: &str, exec_id: Option<&str>) -> Result<u32, TaskError> {
        self.record(Request::Start { id: id.into(), exec_id: exec_id.map(Into::into) });
        Ok(if exec_id.is_some() { 20 } else { 10 })
    }

    fn exec(&self, id: &str, exec_id: &str, process: &Process) -> Result<(), TaskError> {
        self.record(Request::Exec { id: id.into(), exec_id: exec_id.into(), process: Box::new(process.clone()) });
        Ok(())
    }

    fn signal(&self, id: &str, exec_id: Option<&str>, signal: i32, all: bool) -> Result<(), TaskError> {
        self.record(Request::Signal { id: id.into(), exec_id: exec_id.map(Into::into), signal, all });
        if self.signal_fails.load(Ordering::SeqCst) {
            return Err(TaskError::FailedPrecondition(format!("{id} is not running")));
        }
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<(), TaskError> {
        self.record(Request::Delete { id: id.into(), force: true });
        Ok(())
    }

    fn set_paused(&self, id: &str, paused: bool) -> Result<(), TaskError> {
        self.record(if paused { Request::Pause { id: id.into() } } else { Request::Resume { id: id.into() } });
        Ok(())
    }

    fn stats(&self, id: &str) -> Result<ContainerStats, TaskError> {
        self.record(Request::Stats { id: id.into() });
        Ok(ContainerStats { pids: self.guest_pids.lock().expect("pids").clone(), ..Default::default() })
    }

    fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), TaskError> {
        self.record(Request::Update { id: id.into(), resources: Box::new(resources.clone()) });
        Ok(())
    }

    fn resize(&self, id: &str, exec_id: Option<&str>, rows: u16, cols: u16) -> Result<(), TaskError> {
        self.record(Request::ResizeTty { id: id.into(), exec_id: exec_id.map(Into::into), rows, cols });
        Ok(())
    }

    fn wait(&self, id: &str, exec_id: Option<&str>) -> Result<ExitStatus, TaskError> {
        let key = (id.to_string(), exec_id.map(String::from));
        let mut e = self.exits.lock().expect("exits");
        loop {
            if let Some(s) = e.get(&key) {
                return Ok(*s);
            }
            if self.dead.load(Ordering::SeqCst) {
                return Err(TaskError::FailedPrecondition("vm gone".into()));
            }
            e = self.exited.wait_timeout(e, Duration::from_millis(50)).expect("wait").0;
        }
    }

    fn attach(&self, _id: &str, _exec_id: Option<&str>, terminal: bool) -> Result<Streams, TaskError> {
        // The far ends close at once: the process printed nothing.
        let stream = || UnixStream::pair().map(|(a, _b)| a).map_err(crate::error::io("pair"));
        if terminal {
            return Ok(Streams::Tty(stream()?));
        }
        Ok(Streams::Pipes { stdin: stream()?, stdout: stream()?, stderr: stream()? })
    }

    fn shared_dir(&self) -> Option<PathBuf> {
        Some(self.shared.clone())
    }

    fn has_disk(&self, serial: &str) -> bool {
        self.disks.lock().expect("disks").iter().any(|d| d == serial)
    }

    fn alive(&self) -> bool {
        !self.dead.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    fn vmm_pid(&self) -> u32 {
        4242
    }

    fn state_dir(&self) -> PathBuf {
        self.shared.join("vm")
    }
}

struct FakeBooter {
    guest: Arc<FakeGuest>,
    boots: Arc<Mutex<Vec<BootRequest>>>,
    /// The bundle records that existed when each boot began.
    records_at_boot: Arc<Mutex<Vec<PathBuf>>>,
}

impl Booter for FakeBooter {
    fn boot(&self, req: &BootRequest) -> Result<Arc<dyn Guest>, TaskError> {
        self.boots.lock().expect("boots").push(req.clone());
        let bundles = self.guest.shared.parent().map(|p| p.join("bundles")).unwrap_or_default();
        let found = std::fs::read_dir(bundles).into_iter().flatten().flatten().map(|e| e.path().join("isola.json"));
        self.records_at_boot.lock().expect("records").extend(found.filter(|p| p.exists()));
        Ok(self.guest.clone())
    }

    fn state_dir_for(&self, _name: &str) -> PathBuf {
        self.guest.state_dir()
    }
}

struct World {
    pod: Arc<Pod>,
    guest: Arc<FakeGuest>,
    events: Arc<Recorder>,
    boots: Arc<Mutex<Vec<BootRequest>>>,
    records_at_boot: Arc<Mutex<Vec<PathBuf>>>,
    dir: tempfile::TempDir,
}

fn world() -> World {
    assert!(nix::unistd::geteuid().is_root(), "rootfs binds need root (does not skip)");
    let dir = tempfile::tempdir().expect("tmp");
    let guest = Arc::new(FakeGuest { shared: dir.path().join("shared"), ..Default::default() });
    let events = Arc::new(Recorder::default());
    let boots = Arc::new(Mutex::new(Vec::new()));
    let records_at_boot = Arc::new(Mutex::new(Vec::new()));
    let booter = FakeBooter { guest: guest.clone(), boots: boots.clone(), records_at_boot: records_at_boot.clone() };
    // Stand-ins: `cat` lives until its stdin closes, as the real one does (the task
    // names become the shell's $0 and $1).
    let standin =
        crate::standin::StandInCommand::Program { program: "sh".into(), args: vec!["-c".into(), "cat".into()] };
    let pod = Pod::with_stand_in(Box::new(booter), events.clone(), standin, None);
    World { pod, guest, events, boots, records_at_boot, dir }
}

impl World {
    /// A bundle with a config.json (these annotations) and an empty rootfs directory.
    fn bundle(&self, id: &str, annotations: &[(&str, &str)]) -> CreateRequest {
        let b = self.dir.path().join("bundles").join(id);
        std::fs::create_dir_all(b.join("rootfs")).expect("bundle");
        let mut spec = Spec::default();
        spec.set_annotations(Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()));
        spec.save(b.join("config.json")).expect("config.json");
        CreateRequest { id: id.into(), bundle: b.display().to_string(), ..Default::default() }
    }

    fn topics(&self) -> Vec<String> {
        self.events.topics()
    }
}

fn alive(pid: u32) -> bool {
    isola_sandbox::procfs::running(pid as i32)
}

fn wait_code(w: &World, id: &str, exec: &str) -> u32 {
    w.pod.wait(id, exec).expect("wait").code
}

#[test]
fn a_standalone_container_runs_exits_and_takes_its_vm_along_on_delete() {
    let w = world();
    let pid = w.pod.create(w.bundle("c1", &[])).expect("create");
    assert!(pid > 0 && alive(pid), "Create reports a live host pid (the stand-in): {pid}");
    let records = w.records_at_boot.lock().expect("records").clone();
    assert_eq!(records, vec![w.dir.path().join("bundles/c1/isola.json")], "the cleanup record exists before the boot");
    assert_eq!(w.boots.lock().expect("boots")[0].name, "c1");
    assert!(w.dir.path().join("shared/c1/rootfs").exists(), "rootfs bound into the share");
    assert_eq!(w.pod.start("c1", "").expect("start"), pid, "Start and State report the same host pid");
    assert_eq!(w.pod.state("c1", "").expect("state").1, pid);
    assert_eq!(w.pod.task_pid("c1"), pid, "Connect reports the task's pid, not the VMM's");
    assert_ne!(w.pod.task_pid("c1"), w.guest.vmm_pid());
    assert_eq!(w.pod.task_pid("nope"), 0);
    assert_eq!(w.pod.state("c1", "").expect("state").2, Status::Running);
    w.guest.exit("c1", None, 42, false);
    assert_eq!(wait_code(&w, "c1", ""), 42);
    assert!(!alive(pid), "the host pid ends with the process");
    let (_, exit) = w.pod.delete("c1", "").expect("delete");
    assert_eq!(exit.code, 42);
    assert!(w.guest.stopped.load(Ordering::SeqCst), "the owner's delete stops the VM");
    assert!(!w.dir.path().join("shared/c1").exists(), "rootfs unmounted and removed");
    assert_eq!(w.topics(), ["create", "start", "exit", "delete"]);
    assert_eq!(w.guest.ops(), ["create_container", "start", "delete"]);
    assert!(w.pod.is_empty());
}

#[test]
fn exec_processes_have_their_own_lifecycle_and_events() {
    let w = world();
    w.pod.create(w.bundle("c1", &[])).expect("create");
    let e = w.pod.exec("c1", "x1", Default::default(), Default::default()).expect_err("not running yet");
    assert!(matches!(e, TaskError::FailedPrecondition(_)), "{e}");
    w.pod.start("c1", "").expect("start");
    w.pod.exec("c1", "x1", Default::default(), Default::default()).expect("exec");
    let dup = w.pod.exec("c1", "x1", Default::default(), Default::default()).expect_err("duplicate");
    assert!(matches!(dup, TaskError::AlreadyExists(_)), "{dup}");
    let init = w.pod.state("c1", "").expect("state").1;
    let x1 = w.pod.start("c1", "x1").expect("start exec");
    assert!(alive(x1) && x1 != init, "an exec has a host pid of its own");
    assert_eq!(w.pod.pids("c1").expect("pids"), vec![init, x1]);
    // The guest's other processes are listed too, by guest pid; init (10) and the exec
    // (20) by their host pids.
    *w.guest.guest_pids.lock().expect("pids") = vec![10, 20, 33, 34];
    assert_eq!(w.pod.pids("c1").expect("pids"), vec![init, x1, 33, 34]);
    w.guest.guest_pids.lock().expect("pids").clear();
    let running = w.pod.delete("c1", "x1").expect_err("running exec");
    assert!(matches!(running, TaskError::FailedPrecondition(_)), "{running}");
    w.guest.exit("c1", Some("x1"), 3, false);
    assert_eq!(wait_code(&w, "c1", "x1"), 3);
    assert_eq!(w.pod.delete("c1", "x1").expect("delete exec").1.code, 3);
    assert_eq!(w.pod.pids("c1").expect("pids"), vec![init]);
    // An exec created and deleted without a start never ran: status 0, not a kill's.
    w.pod.exec("c1", "x2", Default::default(), Default::default()).expect("exec");
    assert_eq!(w.pod.delete("c1", "x2").expect("delete a created exec").1.code, 0);
    assert!(!alive(x1), "the exec's host pid ended with it");
    w.guest.exit("c1", None, 0, false);
    wait_code(&w, "c1", "");
    w.pod.delete("c1", "").expect("delete");
    assert_eq!(
        w.topics(),
        [
            "create",
            "start",
            "exec-added:x1",
            "exec-started:x1",
            "exit:x1",
            "exec-added:x2",
            "exit:x2",
            "exit",
            "delete"
        ]
    );
}

#[test]
fn a_cri_pod_shares_one_vm_and_ends_it_with_the_sandbox() {
    let w = world();
    let sb = [(CONTAINER_TYPE, "sandbox"), (SANDBOX_ID, "pod1")];
    let app = [(CONTAINER_TYPE, "container"), (SANDBOX_ID, "pod1")];
    let sandbox_pid = w.pod.create(w.bundle("pod1", &sb)).expect("sandbox");
    assert!(sandbox_pid != 4242 && alive(sandbox_pid), "the sandbox task has its own host pid, not the VMM's");
    w.pod.start("pod1", "").expect("start sandbox");
    w.pod.create(w.bundle("app1", &app)).expect("app1");
    w.pod.create(w.bundle("app2", &app)).expect("app2");
    assert_eq!(w.boots.lock().expect("boots").len(), 1, "one VM for the pod");
    w.pod.start("app1", "").expect("start app1");
    w.pod.start("app2", "").expect("start app2");
    // CRI stops containers, then the sandbox; removes containers, then the sandbox.
    w.pod.kill("app1", "", 15, false).expect("kill app1");
    w.guest.exit("app1", None, 143, false);
    assert_eq!(wait_code(&w, "app1", ""), 143);
    w.pod.delete("app1", "").expect("delete app1");
    assert!(!w.guest.stopped.load(Ordering::SeqCst), "the VM outlives a container");
    w.pod.kill("pod1", "", 9, false).expect("kill sandbox");
    assert_eq!(wait_code(&w, "pod1", ""), 137);
    assert!(!alive(sandbox_pid), "killing the sandbox task ends its pid, while the VM waits for Delete");
    w.pod.delete("pod1", "").expect("delete sandbox");
    assert!(w.guest.stopped.load(Ordering::SeqCst), "the sandbox's delete ends the VM");
    // app2 was still running: it is reported exited, never left hanging.
    assert_eq!(wait_code(&w, "app2", ""), VM_GONE_EXIT);
    assert!(w.pod.kill("pod1", "", 9, false).is_err(), "gone");
    let t = w.topics();
    let pos = |needle: &str| t.iter().position(|x| x == needle).expect(needle);
    assert_eq!(t.iter().filter(|x| *x == "create").count(), 3);
    assert!(pos("start") < pos("exit"));
    assert_eq!(t.iter().filter(|x| *x == "exit").count(), 3, "{t:?}");
    // app2's exit is announced when the VM goes, before the sandbox's delete.
    assert_eq!(t[t.len() - 2..], ["exit", "delete"], "{t:?}");
}

#[test]
fn a_dead_vm_ends_every_task_with_an_exit_event() {
    let w = world();
    w.pod.create(w.bundle("c1", &[])).expect("create");
    w.pod.start("c1", "").expect("start");
    w.guest.dead.store(true, Ordering::SeqCst);
    assert_eq!(wait_code(&w, "c1", ""), VM_GONE_EXIT);
    // The watcher notices within its poll period.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !w.guest.stopped.load(Ordering::SeqCst) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(w.guest.stopped.load(Ordering::SeqCst), "what is left of the VM is cleaned");
    let e = w.pod.exec("c1", "x", Default::default(), Default::default()).expect_err("no VM");
    assert!(matches!(e, TaskError::FailedPrecondition(_)), "{e}");
    w.pod.delete("c1", "").expect("delete after the VM died");
    assert!(!w.dir.path().join("shared/c1").exists());
    assert_eq!(w.topics(), ["create", "start", "exit", "delete"]);
}

#[test]
fn a_vm_booted_for_a_container_that_fails_to_create_is_stopped() {
    let w = world();
    let mut r = w.bundle("c1", &[]);
    let m = crate::rootfs::RootMount { typ: "overlay".into(), source: "overlay".into(), options: vec![] };
    r.rootfs = vec![m.clone(), m];
    let e = w.pod.create(r).expect_err("two rootfs mounts");
    assert!(matches!(e, TaskError::InvalidArgument(_)), "{e}");
    assert!(w.guest.stopped.load(Ordering::SeqCst), "the VM went with the failed create");
    assert!(w.pod.is_empty() && w.topics().is_empty());
    // The next create boots afresh.
    w.pod.create(w.bundle("c2", &[])).expect("create");
    assert_eq!(w.boots.lock().expect("boots").len(), 2);
    w.pod.delete("c2", "").expect("delete");
}

#[test]
fn an_oom_kill_is_announced_before_the_exit() {
    let w = world();
    w.pod.create(w.bundle("c1", &[])).expect("create");
    w.pod.start("c1", "").expect("start");
    w.guest.exit("c1", None, 137, true);
    assert_eq!(wait_code(&w, "c1", ""), 137);
    assert_eq!(w.topics(), ["create", "start", "oom", "exit"]);
    w.pod.delete("c1", "").expect("delete");
}

#[test]
fn bad_ids_unknown_tasks_and_orphan_pod_containers_are_named_errors() {
    let w = world();
    let mut r = w.bundle("ok", &[]);
    r.id = "../etc".into();
    assert!(matches!(w.pod.create(r), Err(TaskError::InvalidArgument(_))));
    assert!(matches!(w.pod.start("nope", ""), Err(TaskError::NotFound(_))));
    assert!(matches!(w.pod.wait("nope", ""), Err(TaskError::NotFound(_))));
    let orphan = w.bundle("app", &[(CONTAINER_TYPE, "container"), (SANDBOX_ID, "pod9")]);
    let e = w.pod.create(orphan).expect_err("no sandbox");
    assert_eq!(e.to_string(), "pod pod9 has no running sandbox");
    let mut missing = w.bundle("c2", &[]);
    missing.bundle = "/nonexistent/bundle".into();
    let e = w.pod.create(missing).expect_err("no config.json");
    assert!(e.to_string().contains("/nonexistent/bundle/config.json"), "{e}");
    assert!(w.topics().is_empty(), "no event for what failed");
    w.pod.create(w.bundle("c1", &[])).expect("create");
    assert!(matches!(w.pod.create(w.bundle("c1", &[])), Err(TaskError::AlreadyExists(_))));
    let e = w.pod.delete("c1", "").err();
    assert!(e.is_none(), "a created, never started task can be deleted: {e:?}");
}

#[test]
fn pause_resume_and_kill_reach_the_guest_and_a_stopped_task_is_not_found() {
    let w = world();
    w.pod.create(w.bundle("c1", &[])).expect("create");
    w.pod.start("c1", "").expect("start");
    w.pod.pause("c1", true).expect("pause");
    assert_eq!(w.pod.state("c1", "").expect("state").2, Status::Paused);
    w.pod.pause("c1", false).expect("resume");
    w.pod.kill("c1", "", 15, true).expect("kill all");
    let last = w.guest.calls.lock().expect("calls").last().cloned();
    assert_eq!(last, Some(Request::Signal { id: "c1".into(), exec_id: None, signal: 15, all: true }));
    w.guest.exit("c1", None, 143, false);
    wait_code(&w, "c1", "");
    let e = w.pod.kill("c1", "", 15, false).expect_err("already finished");
    assert!(matches!(e, TaskError::NotFound(_)), "{e}");
    assert_eq!(w.guest.ops(), ["create_container", "start", "pause", "resume", "signal"]);
    assert_eq!(w.topics(), ["create", "start", "paused", "resumed", "exit"]);
    w.pod.delete("c1", "").expect("delete");
}

#[test]
fn killing_a_created_task_ends_it_so_wait_returns_and_delete_reports_it() {
    let w = world();
    w.pod.create(w.bundle("c1", &[])).expect("create");
    w.pod.kill("c1", "", 9, false).expect("kill a created task");
    assert_eq!(wait_code(&w, "c1", ""), 137, "Wait returns 128 + signal");
    assert_eq!(w.pod.state("c1", "").expect("state").2, Status::Stopped);
    assert_eq!(w.pod.delete("c1", "").expect("delete").1.code, 137);
    assert_eq!(w.topics(), ["create", "exit", "delete"]);
}

#[test]
fn deleting_a_created_task_ends_a_pending_wait() {
    let w = world();
    w.pod.create(w.bundle("c1", &[])).expect("create");
    let pod = w.pod.clone();
    let waiter = std::thread::spawn(move || pod.wait("c1", ""));
    std::thread::sleep(Duration::from_millis(100));
    let (_, exit) = w.pod.delete("c1", "").expect("delete");
    assert_eq!(exit.code, 137, "ended as a killed created init");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(waiter.join());
    });
    let got = rx.recv_timeout(Duration::from_secs(5)).expect("the pending Wait returned");
    assert_eq!(got.expect("waiter").expect("an exit").code, 137);
    assert_eq!(w.topics(), ["create", "exit", "delete"]);
}

#[test]
fn resizing_a_process_without_a_terminal_is_ignored() {
    let w = world();
    w.pod.create(w.bundle("c1", &[])).expect("create");
    w.pod.start("c1", "").expect("start");
    w.pod.resize("c1", "", 80, 24).expect("ignored, as runc does");
    assert!(!w.guest.ops().contains(&"resize_tty".to_string()), "{:?}", w.guest.ops());
    assert!(matches!(w.pod.resize("nope", "", 80, 24), Err(TaskError::NotFound(_))));
    w.guest.exit("c1", None, 0, false);
    wait_code(&w, "c1", "");
    w.pod.delete("c1", "").expect("delete");
}

#[test]
fn a_kill_racing_an_exit_is_already_finished_and_other_failures_stay_errors() {
    let w = world();
    w.pod.create(w.bundle("c1", &[])).expect("create");
    w.pod.start("c1", "").expect("start");
    w.guest.signal_fails.store(true, Ordering::SeqCst);
    // No exit follows: the guest's error stands.
    let e = w.pod.kill("c1", "", 15, false).expect_err("fails");
    assert!(matches!(e, TaskError::FailedPrecondition(_)), "{e}");
    // The exit arrives just after the failed signal: "already finished".
    let guest = w.guest.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        guest.exit("c1", None, 0, false);
    });
    let e = w.pod.kill("c1", "", 15, false).expect_err("raced");
    assert!(matches!(e, TaskError::NotFound(ref m) if m.contains("already finished")), "{e}");
    w.pod.delete("c1", "").expect("delete");
}

/// A bundle as the sandbox controller makes it: no config.json.
fn sandbox_bundle(w: &World, id: &str) -> String {
    let b = w.dir.path().join("bundles").join(id);
    std::fs::create_dir_all(&b).expect("bundle");
    b.display().to_string()
}

#[test]
fn the_sandbox_api_boots_the_pod_vm_without_a_pause_container_and_ends_it() {
    let w = world();
    let config = crate::pod_config::PodConfig {
        hostname: "web-1".into(),
        cgroup_parent: "/kubepods/pod1".into(),
        sysctls: vec![("kernel.shm_rmid_forced".into(), "1".into())],
    };
    let netns = Some(PathBuf::from("/var/run/netns/cni-1"));
    w.pod.create_sandbox("pod1", &sandbox_bundle(&w, "pod1"), netns.clone(), &config).expect("CreateSandbox");
    let boot = w.boots.lock().expect("boots")[0].clone();
    assert_eq!((boot.name.as_str(), boot.hostname.as_str(), boot.netns), ("pod1", "web-1", netns));
    assert_eq!(boot.cgroup_path.as_deref(), Some(std::path::Path::new("kubepods/pod1/pod1")));
    assert_eq!(boot.sysctls, config.sysctls);
    assert_eq!(
        w.records_at_boot.lock().expect("records").clone(),
        vec![w.dir.path().join("bundles/pod1/isola.json")],
        "the cleanup record is in the sandbox's bundle before the boot"
    );
    let e = w.pod.create_sandbox("pod1", &sandbox_bundle(&w, "pod1"), None, &config).expect_err("twice");
    assert!(matches!(e, TaskError::AlreadyExists(_)), "{e}");
    assert!(!w.pod.sandbox_status("pod1").expect("status").ready, "not ready before StartSandbox");
    let (pid, created) = w.pod.start_sandbox("pod1").expect("StartSandbox");
    let status = w.pod.sandbox_status("pod1").expect("status");
    assert!(status.ready && status.exit.is_none(), "{status:?}");
    assert_eq!((status.pid, status.created_at), (pid, created));
    assert!(matches!(w.pod.sandbox_status("other"), Err(TaskError::NotFound(_))));
    assert!(w.topics().is_empty(), "no task (and no task event) for the sandbox: {:?}", w.topics());

    // Its containers come through the task API into the same VM.
    let app = [(CONTAINER_TYPE, "container"), (SANDBOX_ID, "pod1")];
    w.pod.create(w.bundle("app1", &app)).expect("app1");
    w.pod.start("app1", "").expect("start app1");
    assert_eq!(w.boots.lock().expect("boots").len(), 1, "one VM for the pod");
    w.pod.kill("app1", "", 15, false).expect("kill");
    w.guest.exit("app1", None, 143, false);
    assert_eq!(wait_code(&w, "app1", ""), 143);
    w.pod.delete("app1", "").expect("delete app1");
    assert!(!w.guest.stopped.load(Ordering::SeqCst), "the VM outlives its last container");
    assert!(!w.pod.is_empty(), "a shim whose sandbox runs is not done");

    // WaitSandbox returns once StopSandbox ends the VM.
    let waiter = {
        let pod = Arc::clone(&w.pod);
        std::thread::spawn(move || pod.wait_sandbox("pod1"))
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished(), "WaitSandbox blocks while the VM runs");
    w.pod.stop_sandbox("pod1").expect("StopSandbox");
    assert_eq!(waiter.join().expect("waiter").expect("WaitSandbox").code, 0);
    assert!(w.guest.stopped.load(Ordering::SeqCst), "StopSandbox ends the VM");
    assert!(!w.pod.sandbox_status("pod1").expect("status").ready);
    w.pod.stop_sandbox("pod1").expect("a second stop is fine");
    assert!(w.pod.start_sandbox("pod1").is_err(), "a stopped sandbox does not start again");
    assert!(w.pod.is_empty());
}

#[test]
fn a_sandbox_vm_that_dies_ends_its_wait_and_its_containers() {
    let w = world();
    w.pod.create_sandbox("pod1", &sandbox_bundle(&w, "pod1"), None, &Default::default()).expect("CreateSandbox");
    assert_eq!(w.boots.lock().expect("boots")[0].hostname, "pod1", "no hostname given: the VM's name");
    w.pod.start_sandbox("pod1").expect("StartSandbox");
    let app = [(CONTAINER_TYPE, "container"), (SANDBOX_ID, "pod1")];
    w.pod.create(w.bundle("app1", &app)).expect("app1");
    w.pod.start("app1", "").expect("start app1");
    w.guest.dead.store(true, Ordering::SeqCst);
    assert_eq!(w.pod.wait_sandbox("pod1").expect("WaitSandbox").code, VM_GONE_EXIT);
    assert_eq!(wait_code(&w, "app1", ""), VM_GONE_EXIT);
    assert!(matches!(w.pod.sandbox_stats("pod1"), Err(TaskError::FailedPrecondition(_))), "no VM, no stats");
}

/// As runc: a pod sandbox in the host's UTS namespace may not set a hostname (it would
/// name the VM every container of the pod shares); the agent never sees a sandbox's spec.
#[test]
fn a_host_uts_pod_sandbox_with_a_hostname_is_refused() {
    let w = world();
    let req = w.bundle("pod1", &[(CONTAINER_TYPE, "sandbox"), (SANDBOX_ID, "pod1")]);
    let config = Path::new(&req.bundle).join("config.json");
    let mut s = Spec::load(&config).expect("spec");
    s.set_hostname(Some("named".into()));
    let mut linux = s.linux().clone().expect("linux");
    let ns = linux.namespaces().clone().unwrap_or_default();
    linux.set_namespaces(Some(
        ns.into_iter().filter(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Uts).collect(),
    ));
    s.set_linux(Some(linux));
    s.save(&config).expect("save");
    let e = w.pod.create(req).expect_err("host UTS with a hostname");
    assert!(matches!(e, TaskError::InvalidArgument(ref m) if m.contains("UTS")), "{e}");
    assert!(w.boots.lock().expect("boots").is_empty(), "no VM booted for it");
}

/// A pod member's own host cgroup (kubelet's and cAdvisor's view of the container):
/// its limits at its `cgroupsPath`, its task pid in it, Update reaching it, gone with
/// the container. On this host's real cgroups, as root.
#[test]
fn a_pod_members_host_cgroup_carries_its_limits_and_updates() {
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};
    let w = world();
    let sb = [(CONTAINER_TYPE, "sandbox"), (SANDBOX_ID, "pod1")];
    w.pod.create(w.bundle("pod1", &sb)).expect("sandbox");
    let req = w.bundle("app1", &[(CONTAINER_TYPE, "container"), (SANDBOX_ID, "pod1")]);
    let parent = format!("isola-test-limits-{}", std::process::id());
    let config = Path::new(&req.bundle).join("config.json");
    let mut s = Spec::load(&config).expect("spec");
    let mut linux = s.linux().clone().expect("linux");
    linux.set_cgroups_path(Some(PathBuf::from(format!("/{parent}/app1"))));
    let res = |mib: i64| {
        LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(mib << 20).build().expect("mem"))
            .cpu(LinuxCpuBuilder::default().quota(50_000i64).period(100_000u64).build().expect("cpu"))
            .build()
            .expect("resources")
    };
    linux.set_resources(Some(res(32)));
    s.set_linux(Some(linux));
    s.save(&config).expect("save");
    let pid = w.pod.create(req).expect("app1");
    let root = Path::new("/sys/fs/cgroup");
    let (mem, cpu) = if root.join("cgroup.controllers").exists() {
        let d = root.join(&parent).join("app1");
        (d.join("memory.max"), d.join("cpu.max"))
    } else {
        let cpu = if root.join("cpu,cpuacct").is_dir() { "cpu,cpuacct" } else { "cpu" };
        (
            root.join("memory").join(&parent).join("app1/memory.limit_in_bytes"),
            root.join(cpu).join(&parent).join("app1/cpu.cfs_quota_us"),
        )
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(read(&mem).trim(), (32u64 << 20).to_string(), "the container's limit, not the VM's");
    assert!(read(&cpu).trim().starts_with("50000"), "{}", read(&cpu));
    let procs = read(&mem.with_file_name("cgroup.procs"));
    assert!(procs.split_whitespace().any(|p| p == pid.to_string()), "the task pid is in it: {procs}");
    w.pod.update("app1", res(64)).expect("update");
    assert_eq!(read(&mem).trim(), (64u64 << 20).to_string(), "Update reaches the host cgroup");
    w.pod.start("app1", "").expect("start");
    w.guest.exit("app1", None, 0, false);
    wait_code(&w, "app1", "");
    w.pod.delete("app1", "").expect("delete");
    assert!(!mem.parent().expect("dir").exists(), "removed with the container");
    for c in ["memory", "cpu,cpuacct", "cpu", "pids", ""] {
        let _ = std::fs::remove_dir(root.join(c).join(&parent));
    }
}
