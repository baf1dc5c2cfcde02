//! An exec on the keeper's side: the process made and started in the guest with the
//! relay's stdio, the start reported, then its exit. The relay's connection is its
//! life line: if it closes first (the relay was killed), the process is killed too.

use std::io::BufReader;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use isola_task::stdio::StdioPaths;

use crate::control::{read_line, send_line, Reply, Request};
use crate::error::RuntimeError;
use crate::keeper_state::Keeper;

/// The relay's stdio as paths the bridge takes: each wanted stream (a non-empty entry)
/// is the next fd the relay handed over, as `/proc/self/fd/N` (duplicated, not reopened).
fn stdio_paths(wanted: &[String; 3], fds: &[OwnedFd]) -> Result<[String; 3], RuntimeError> {
    let mut next = fds.iter();
    let mut out: [String; 3] = Default::default();
    for (i, w) in wanted.iter().enumerate() {
        if !w.is_empty() {
            let fd = next.next().ok_or_else(|| RuntimeError::Invalid("the exec's stdio fds are missing".into()))?;
            out[i] = format!("/proc/self/fd/{}", fd.as_raw_fd());
        }
    }
    Ok(out)
}

pub fn run(
    k: &Keeper,
    req: Request,
    fds: Vec<OwnedFd>,
    mut r: BufReader<UnixStream>,
    mut w: UnixStream,
) -> std::io::Result<()> {
    let Request::Exec { exec, process, stdio, terminal, relay_pid } = req else { return Ok(()) };
    let id = k.id();
    let started = (|| {
        let process = serde_json::from_value(process).map_err(|e| RuntimeError::Invalid(format!("process: {e}")))?;
        let [stdin, stdout, stderr] = stdio_paths(&stdio, &fds)?;
        k.pod.exec(&id, &exec, process, StdioPaths { stdin, stdout, stderr, terminal })?;
        if let Err(e) = k.pod.start(&id, &exec) {
            let _ = k.pod.delete(&id, &exec);
            return Err(e.into());
        }
        Ok::<_, RuntimeError>(())
    })();
    // The bridge has its own copies now.
    drop(fds);
    if let Err(e) = started {
        return send_line(&mut w, &Reply::err(e));
    }
    if let Ok(mut relays) = k.relays.lock() {
        relays.push(relay_pid);
    }
    send_line(&mut w, &Reply::ok(serde_json::Value::Null))?;
    // The relay sends nothing more; EOF means it is gone.
    let watch = {
        let (pod, id, exec) = (std::sync::Arc::clone(&k.pod), id.clone(), exec.clone());
        std::thread::spawn(move || {
            while let Ok(Some(_)) = read_line::<Request>(&mut r) {}
            let _ = pod.kill(&id, &exec, libc::SIGKILL as u32, false);
        })
    };
    let code = match k.pod.wait(&id, &exec) {
        Ok(e) => e.code as i32,
        Err(_) => 255,
    };
    let _ = k.pod.delete(&id, &exec);
    if let Ok(mut relays) = k.relays.lock() {
        relays.retain(|p| *p != relay_pid);
    }
    let r = send_line(&mut w, &Reply { exited: Some(code), ..Default::default() });
    let _ = w.shutdown(std::net::Shutdown::Both);
    let _ = watch.join();
    r
}
