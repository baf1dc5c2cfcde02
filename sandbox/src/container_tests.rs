//! The container handle against a fake agent on a unix socket: a scripted server that
//! speaks the hybrid-vsock handshake and the frame protocol, records every request with
//! the connection it came on, and streams canned output.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isola_protocol::client::{accept_handshake, ClientError};
use isola_protocol::frame::{read_frame, write_frame};
use isola_protocol::{AgentError, ErrorCode, ExitStatus, Request, Response, RootfsSource, StdioStream};

use crate::agent::Agent;
use crate::container::{Container, ContainerError, Rootfs, Streams};
use crate::volume::Volume;

/// (connection number, request)
type Log = Arc<Mutex<Vec<(usize, Request)>>>;

struct FakeAgent {
    _dir: tempfile::TempDir,
    uds: PathBuf,
    log: Log,
}

/// The fake's answers: exits with 3, refuses signals to "gone", drops the connection on
/// stats of "drop", refuses creation of "bad".
fn reply(req: &Request) -> Option<Response> {
    Some(match req {
        Request::CreateContainer { id, .. } if id == "bad" => {
            Response::Error(AgentError::new(ErrorCode::InvalidArgument, "bad spec"))
        }
        Request::CreateContainer { .. } => Response::Started { pid: 41 },
        Request::Start { exec_id, .. } => Response::Started { pid: if exec_id.is_some() { 52 } else { 41 } },
        Request::Exec { .. } => Response::Started { pid: 52 },
        Request::Wait { .. } => Response::Exited { status: ExitStatus { code: 3, signal: None, oom_killed: false } },
        Request::Signal { id, .. } if id == "gone" => {
            Response::Error(AgentError::new(ErrorCode::NotFound, "no container gone"))
        }
        Request::Stats { id } if id == "drop" => return None,
        Request::Stats { .. } => Response::Stats { stats: Default::default() },
        Request::Logs { .. } => Response::Logs { data: "logged\n".into() },
        _ => Response::Ok,
    })
}

fn serve(mut s: UnixStream, n: usize, log: Log) {
    if accept_handshake(&mut s).is_err() {
        return;
    }
    while let Ok(req) = read_frame::<Request, _>(&mut s) {
        if let Ok(mut l) = log.lock() {
            l.push((n, req.clone()));
        }
        match &req {
            Request::UploadRootfs { .. } => {
                let _ = write_frame(&mut s, &Response::Ok);
                let entries = tar::Archive::new(&mut s).entries().map(|e| e.count()).unwrap_or(0);
                let r =
                    if entries > 0 { Response::Ok } else { Response::Error(AgentError::new(ErrorCode::Os, "empty")) };
                let _ = write_frame(&mut s, &r);
                return;
            }
            Request::AttachStdio { stream, .. } => {
                let _ = write_frame(&mut s, &Response::Ok);
                if *stream == StdioStream::Stdout {
                    let _ = s.write_all(b"out\n");
                }
                return;
            }
            _ => match reply(&req) {
                Some(r) => {
                    let _ = write_frame(&mut s, &r);
                }
                None => return,
            },
        }
    }
}

impl FakeAgent {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let uds = dir.path().join("vsock.sock");
        let listener = UnixListener::bind(&uds).expect("bind");
        let log: Log = Arc::default();
        let l = log.clone();
        std::thread::spawn(move || {
            for (n, s) in listener.incoming().enumerate() {
                let Ok(s) = s else { return };
                let l = l.clone();
                std::thread::spawn(move || serve(s, n, l));
            }
        });
        FakeAgent { _dir: dir, uds, log }
    }

    fn agent(&self) -> Agent {
        Agent::new(&self.uds, Duration::from_secs(5))
    }

    /// The requests' op names, each with its connection number.
    fn ops(&self) -> Vec<(usize, String)> {
        let l = self.log.lock().expect("log");
        l.iter()
            .map(|(n, r)| (*n, serde_json::to_value(r).expect("json")["op"].as_str().unwrap_or("?").to_string()))
            .collect()
    }

    fn requests(&self) -> Vec<Request> {
        self.log.lock().expect("log").iter().map(|(_, r)| r.clone()).collect()
    }
}

fn spec() -> oci_spec::runtime::Spec {
    crate::spec::spec(&crate::spec::ContainerOptions { args: vec!["true".into()], ..Default::default() }).expect("spec")
}

fn rootfs_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("rootfs");
    std::fs::write(d.path().join("marker"), "from the host rootfs").expect("write");
    d
}

#[test]
fn create_start_wait_go_over_one_control_connection_and_a_wait_of_its_own() {
    let fake = FakeAgent::start();
    let root = rootfs_dir();
    let c = Container::create(fake.agent(), None, "c1", spec(), Rootfs::Dir(root.path()), &[]).expect("create");
    assert_eq!(c.start().expect("start"), 41);
    let status = c.wait().expect("wait");
    assert_eq!((status.code, status.signal), (3, None));
    let ops = fake.ops();
    let names: Vec<&str> = ops.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(names, ["upload_rootfs", "create_container", "start", "wait"], "without a share the rootfs is uploaded");
    let (create_conn, start_conn, wait_conn) = (ops[1].0, ops[2].0, ops[3].0);
    assert_eq!(create_conn, start_conn, "calls share the control connection");
    assert_ne!(wait_conn, start_conn, "a blocking wait gets its own connection");
    assert!(matches!(&fake.requests()[1], Request::CreateContainer { rootfs: RootfsSource::Upload, .. }));
}

#[test]
fn exec_signal_logs_and_streams_are_typed_calls() {
    let fake = FakeAgent::start();
    let c = Container::existing(fake.agent(), None, "c1");
    let process =
        crate::spec::process(&crate::spec::ContainerOptions { args: vec!["ls".into()], ..Default::default() })
            .expect("process");
    let p = c.exec("e1", process).expect("exec");
    let Streams::Pipes { mut stdout, .. } = p.attach(false).expect("attach") else { panic!("pipes expected") };
    assert_eq!(p.start().expect("start exec"), 52);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).expect("read");
    assert_eq!(out, "out\n");
    c.signal(15, true).expect("signal");
    assert_eq!(c.logs(100).expect("logs"), "logged\n");
    let reqs = fake.requests();
    assert!(reqs.contains(&Request::Start { id: "c1".into(), exec_id: Some("e1".into()) }), "{reqs:?}");
    assert!(reqs.contains(&Request::Signal { id: "c1".into(), exec_id: None, signal: 15, all: true }), "{reqs:?}");
    let streams: Vec<StdioStream> = reqs
        .iter()
        .filter_map(|r| if let Request::AttachStdio { stream, .. } = r { Some(*stream) } else { None })
        .collect();
    assert_eq!(streams, [StdioStream::Stdout, StdioStream::Stderr, StdioStream::Stdin]);
}

#[test]
fn an_agent_refusal_keeps_its_code_and_a_dropped_connection_is_reopened() {
    let fake = FakeAgent::start();
    let agent = fake.agent();
    let e = Container::existing(agent.clone(), None, "gone").signal(9, false).expect_err("refused");
    let ContainerError::Agent(ClientError::Agent(e)) = e else { panic!("typed agent error expected: {e}") };
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(Container::existing(agent.clone(), None, "drop").stats().is_err(), "connection dropped mid-call");
    Container::existing(agent, None, "c1").stats().expect("the next call reconnects");
    let conns: Vec<usize> = fake.ops().iter().map(|(n, _)| *n).collect();
    assert_eq!(conns[0], conns[1], "a refusal leaves the connection in step");
    assert_ne!(conns[1], conns[2], "a broken connection is replaced");
}

fn mounted(p: &Path) -> bool {
    crate::mounts::mounts_under(p).iter().any(|m| m == p)
}

/// As root: the rootfs and a volume are bound into the share, the spec points at the
/// guest's view of them, and delete (or a failed create) leaves nothing mounted.
#[test]
fn rootfs_and_volumes_are_bound_into_the_share_and_released() {
    assert!(nix::unistd::geteuid().is_root(), "needs root for bind mounts (does not skip)");
    let fake = FakeAgent::start();
    let share = tempfile::tempdir().expect("share");
    let (root, vol) = (rootfs_dir(), tempfile::tempdir().expect("volume"));
    let v = Volume { host: vol.path().into(), guest: "/data".into(), readonly: true };
    let shared = Some(share.path().to_path_buf());
    let c =
        Container::create(fake.agent(), shared.clone(), "c1", spec(), Rootfs::Dir(root.path()), &[v]).expect("create");
    let in_share = share.path().join("c1/rootfs");
    assert!(mounted(&in_share) && mounted(&share.path().join("c1/volumes/0")));
    assert_eq!(std::fs::read_to_string(in_share.join("marker")).expect("bound"), "from the host rootfs");
    let Some(Request::CreateContainer { spec: sent, rootfs, .. }) = fake.requests().pop() else { panic!("no create") };
    assert_eq!(
        rootfs,
        RootfsSource::GuestPath { path: "/run/isola/shared/c1/rootfs".into(), in_place: false },
        "an image directory is kept unwritten under an overlay"
    );
    let m = sent.mounts().as_ref().and_then(|m| m.iter().find(|m| m.destination() == Path::new("/data")).cloned());
    let m = m.expect("volume mount in the spec");
    assert_eq!(m.source().as_deref(), Some(Path::new("/run/isola/shared/c1/volumes/0")));
    assert!(m.options().as_ref().is_some_and(|o| o.contains(&"ro".to_string())));
    c.delete(true).expect("delete");
    assert!(!share.path().join("c1").exists(), "released");
    assert!(root.path().join("marker").exists(), "the source is untouched");

    let e =
        Container::create(fake.agent(), shared, "bad", spec(), Rootfs::Dir(root.path()), &[]).err().expect("refused");
    assert!(e.to_string().contains("bad spec"), "{e}");
    assert!(crate::mounts::mounts_under(share.path()).is_empty(), "a failed create leaves no mount");
    assert!(!share.path().join("bad").exists());
}

#[test]
fn bad_rootfs_and_missing_share_are_named() {
    let fake = FakeAgent::start();
    let e = Container::create(fake.agent(), None, "c1", spec(), Rootfs::Dir(Path::new("/nonexistent/r")), &[])
        .err()
        .expect("missing dir");
    assert!(e.to_string().contains("/nonexistent/r: not a directory"), "{e}");
    let e = Container::create(fake.agent(), None, "c1", spec(), Rootfs::InShare, &[]).err().expect("no share");
    assert!(matches!(e, ContainerError::NoSharedFs), "{e}");
    let root = rootfs_dir();
    let v = Volume { host: "/tmp".into(), guest: "/t".into(), readonly: false };
    let e = Container::create(fake.agent(), None, "c1", spec(), Rootfs::Upload(root.path()), &[v]).err().expect("vol");
    assert!(matches!(e, ContainerError::Volume(crate::volume::VolumeError::NoSharedFs)), "{e}");
}

/// A rootfs the caller put in the share is the container's own layer: written in place
/// (Docker's `diff`/`cp`/`commit` read the bundle's rootfs), never under an overlay.
#[test]
fn a_rootfs_in_the_share_is_written_in_place() {
    let fake = FakeAgent::start();
    let share = tempfile::tempdir().expect("share");
    Container::create(fake.agent(), Some(share.path().into()), "c1", spec(), Rootfs::InShare, &[]).expect("create");
    let Some(Request::CreateContainer { rootfs, .. }) = fake.requests().pop() else { panic!("no create") };
    assert_eq!(rootfs, RootfsSource::GuestPath { path: "/run/isola/shared/c1/rootfs".into(), in_place: true });
}
