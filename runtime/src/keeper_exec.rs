//! An exec on the keeper's side: the process made and started in the guest with the
//! relay's stdio, the start reported, then its exit. The relay's connection is its
//! life line: if it closes first (the relay was killed), the process is killed too.

use std::io::BufReader;
use std::os::unix::net::UnixStream;

use containerd_shim_isola::stdio::StdioPaths;

use crate::control::{read_line, send_line, Reply, Request};
use crate::error::RuntimeError;
use crate::keeper::Keeper;

pub fn run(k: &Keeper, req: Request, mut r: BufReader<UnixStream>, mut w: UnixStream) -> std::io::Result<()> {
    let Request::Exec { exec, process, stdio, terminal, relay_pid } = req else { return Ok(()) };
    let id = k.id();
    let started = (|| {
        let process = serde_json::from_value(process).map_err(|e| RuntimeError::Invalid(format!("process: {e}")))?;
        let [stdin, stdout, stderr] = stdio;
        k.pod.exec(&id, &exec, process, StdioPaths { stdin, stdout, stderr, terminal })?;
        if let Err(e) = k.pod.start(&id, &exec) {
            let _ = k.pod.delete(&id, &exec);
            return Err(e.into());
        }
        Ok::<_, RuntimeError>(())
    })();
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
