//! The machine a container's guest gets, on whichever backend this host picks (QEMU
//! here; isola-vmm under nested KVM, scripts/nested/tests.sh): every vCPU it was given,
//! and a network device that carries bulk TCP both ways intact.

use std::io::{Read, Write};
use std::time::Instant;

use isola_e2e::{busybox_rootfs, isola};
use sha2::{Digest, Sha256};

fn rootfs() -> String {
    busybox_rootfs().display().to_string()
}

#[test]
fn a_two_vcpu_guest_sees_two_cpus() {
    let (out, err, code) =
        isola(&["run", "--name", "e2e-smp", "--cpus", "2", "--rootfs", &rootfs(), "--", "nproc"], None);
    assert_eq!((out.trim(), code), ("2", 0), "{err}");
    let (out, err, code) = isola(&["run", "--name", "e2e-up", "--rootfs", &rootfs(), "--", "nproc"], None);
    assert_eq!((out.trim(), code), ("1", 0), "{err}");
}

/// Bytes no compression or pattern could fake (xorshift64).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 MiB (8 MiB in nested KVM, where every packet is emulated twice over: still
/// thousands of frames, many times round each ring) of pseudo-random bytes each way through the guest's network device and the
/// bridge to a peer beyond the uplink, checked by SHA-256 on the other side: guest → out (`nc` sends a file of a
/// read-only volume), host → guest (an HTTP download). The guest only copies, so the
/// time goes to the devices, not to making data.
#[test]
fn bulk_tcp_both_ways_arrives_intact() {
    let blob_len: usize = if std::env::var_os("ISOLA_NESTED").is_some() { 8 << 20 } else { 64 << 20 };
    // Guests may not reach the host's own services: the peer is beyond the uplink.
    let outside = isola_e2e::outside::Outside::new(3);
    let upload = outside.listen(outside.addr);
    let download = outside.listen(outside.addr);
    let (up_port, down_port) = (upload.local_addr().expect("addr").port(), download.local_addr().expect("addr").port());
    let receiver = std::thread::spawn(move || {
        let (mut c, _) = upload.accept().expect("the guest connects");
        let started = Instant::now();
        let mut hash = Sha256::new();
        let (mut buf, mut total) = (vec![0u8; 1 << 16], 0usize);
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hash.update(&buf[..n]);
                    total += n;
                }
                Err(e) => panic!("reading the guest's stream after {total} bytes: {e}"),
            }
        }
        (hex(hash.finalize()), total, started.elapsed())
    });
    let blob = noise(blob_len);
    let blob_sha = hex(Sha256::digest(&blob));
    let vol = tempfile::tempdir().expect("volume");
    std::fs::write(vol.path().join("blob"), &blob).expect("write the blob");
    let volume = format!("{}:/data:ro", vol.path().display());
    let served = blob;
    let server = std::thread::spawn(move || {
        let (mut c, _) = download.accept().expect("the guest downloads");
        let mut req = [0u8; 1024];
        let _ = c.read(&mut req);
        let started = Instant::now();
        write!(
            c,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            served.len()
        )
        .expect("header");
        c.write_all(&served).expect("the guest takes the whole blob");
        started.elapsed()
    });
    let script = format!(
        "nc {o} {up_port} < /data/blob && wget -q -O - http://{o}:{down_port}/blob | sha256sum",
        o = outside.addr
    );
    let r = rootfs();
    let args = ["run", "--name", "e2e-bulk", "-v", &volume, "--rootfs", &r, "--", "sh", "-c", &script];
    let (out, err, code) = isola(&args, None);
    assert_eq!(code, 0, "{out}\n{err}");
    let (up_sha, up_len, up_time) = receiver.join().expect("receiver");
    assert_eq!(up_len, blob_len, "guest → host: every byte arrived");
    assert_eq!(up_sha, blob_sha, "guest → host: intact");
    let down_time = server.join().expect("server");
    assert_eq!(out.split_whitespace().next(), Some(blob_sha.as_str()), "host → guest: intact ({out})");
    let mibs = |bytes: usize, t: std::time::Duration| bytes as f64 / (1 << 20) as f64 / t.as_secs_f64().max(1e-3);
    eprintln!(
        "bulk: guest → host {:.1} MiB/s, host → guest {:.1} MiB/s",
        mibs(up_len, up_time),
        mibs(blob_len, down_time)
    );
}
