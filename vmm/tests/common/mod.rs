//! Shared by the vmm integration tests: the host side of the vsock_echo guest.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

/// Listens on host port 5000 of the VM whose vsock socket is `uds` (bound now, before
/// the VM starts): takes the guest's 22 bytes, answers "pong", and returns what it
/// got and anything after it until the guest closes.
pub fn host_port_5000(uds: &Path) -> JoinHandle<(String, Vec<u8>)> {
    let listener = UnixListener::bind(format!("{}_5000", uds.display())).expect("bind host port 5000");
    std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("guest connects to port 5000");
        c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut got = [0u8; 22];
        c.read_exact(&mut got).expect("guest data");
        c.write_all(b"pong").expect("reply");
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        (String::from_utf8_lossy(&got).to_string(), rest)
    })
}
