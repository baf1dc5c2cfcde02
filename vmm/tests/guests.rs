//! isola-vmm against real KVM on this host, with the freestanding test guests.
//! Each test runs the real `isola-vmm` binary and checks what the guest reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use isola_testguests as testguest;

mod common;
use isola_vmm::memory::e820_map;

fn guest(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guests");
    testguest::build(name, &dir).unwrap_or_else(|e| panic!("building test guest {name}: {e}"))
}

fn require_kvm() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: isola-vmm tests need KVM (hardware or PVM); they do not skip"
    );
}

fn vmm(args: &[&str]) -> Output {
    require_kvm();
    Command::new(env!("CARGO_BIN_EXE_isola-vmm")).args(args).output().expect("run isola-vmm")
}

/// "name hex" lines from the guest's report.
fn fields(stdout: &str) -> HashMap<String, String> {
    stdout.lines().filter_map(|l| l.split_once(' ')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn hex(map: &HashMap<String, String>, key: &str) -> u64 {
    let v = map.get(key).unwrap_or_else(|| panic!("guest did not report {key}: {map:?}"));
    u64::from_str_radix(v.trim(), 16).unwrap_or_else(|e| panic!("{key}={v}: {e}"))
}

fn reported_e820(stdout: &str) -> Vec<(u64, u64, u32)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("e820 "))
        .map(|rest| {
            let v: Vec<u64> = rest.split(' ').map(|x| u64::from_str_radix(x, 16).expect("hex")).collect();
            (v[0], v[1], v[2] as u32)
        })
        .collect()
}

fn host_kvm_signature() -> String {
    let kvm = kvm_ioctls::Kvm::new().expect("open /dev/kvm");
    let cpuid = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).expect("supported cpuid");
    let e = cpuid.as_slice().iter().find(|e| e.function == 0x4000_0000).expect("KVM signature leaf");
    let mut sig = Vec::new();
    for r in [e.ebx, e.ecx, e.edx] {
        sig.extend_from_slice(&r.to_le_bytes());
    }
    String::from_utf8_lossy(&sig).trim_end_matches('\0').to_string()
}

fn check_boot_report(out: &Output, protocol: &str, mem_mib: u64, vcpus: u64, cmdline: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "isola-vmm failed: {stderr}\n{stdout}");
    assert!(stdout.contains(&format!("isola-guest: start boot_check {protocol}")), "{stdout}");
    assert!(stdout.contains("isola-guest: done"), "{stdout}");
    let f = fields(&stdout);
    // Long mode with paging, as the 64-bit protocol promises (PVH guests switch themselves).
    assert_eq!(hex(&f, "cr0") & 0x8000_0001, 0x8000_0001);
    assert_eq!(hex(&f, "cr4") & 0x20, 0x20);
    assert_eq!(hex(&f, "efer") & 0x500, 0x500);
    let expected: Vec<(u64, u64, u32)> =
        e820_map(mem_mib << 20).expect("map").iter().map(|e| (e.addr, e.size, e.kind)).collect();
    assert_eq!(reported_e820(&stdout), expected);
    assert_eq!(hex(&f, "e820-count"), expected.len() as u64);
    assert_eq!(f.get("cmdline").map(String::as_str), Some(cmdline));
    assert_eq!(f.get("cpuid-hv").map(String::as_str), Some(host_kvm_signature().as_str()));
    let leaf1_ebx = hex(&f, "cpuid1-ebx");
    assert_eq!(leaf1_ebx >> 24, 0, "boot vCPU has APIC id 0");
    assert_eq!((leaf1_ebx >> 16) & 0xff, vcpus, "logical processor count");
    assert_ne!(hex(&f, "cpuid1-ecx") & (1 << 31), 0, "hypervisor bit");
    let events: Vec<&str> =
        stderr.lines().filter(|l| l.starts_with("isola-vmm: event=") && l.contains(" us=")).collect();
    assert!(stderr.contains("isola-vmm: event=rss_kib value="), "{stderr}");
    let order: Vec<&str> = events.iter().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(
        order,
        [
            "event=memory_ready",
            "event=devices_ready",
            "event=vcpus_ready",
            "event=vmm_ready",
            "event=boot_timer",
            "event=vmm_exit"
        ],
        "{stderr}"
    );
    // Each milestone on the same clock, in order.
    let us: Vec<u64> = events.iter().filter_map(|l| l.split(" us=").nth(1)?.trim().parse().ok()).collect();
    assert!(us.windows(2).all(|w| w[0] <= w[1]), "{stderr}");
}

#[test]
fn linux_protocol_guest_sees_zero_page_paging_e820_cmdline_and_cpuid() {
    let k = guest("boot_check");
    let out = vmm(&[
        "--kernel",
        k.to_str().expect("path"),
        "--mem-mib",
        "64",
        "--cmdline",
        "isola test=1",
        "--timeout-ms",
        "30000",
    ]);
    check_boot_report(&out, "linux64", 64, 1, "isola test=1");
    let f = fields(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(hex(&f, "zero-page"), isola_vmm::memory::ZERO_PAGE_ADDR);
    assert_eq!(hex(&f, "hdrs"), 0x5372_6448);
    assert_eq!(hex(&f, "cr3"), isola_vmm::memory::PML4_ADDR);
    assert_eq!(hex(&f, "rsp"), isola_vmm::memory::BOOT_STACK_ADDR);
}

#[test]
fn pvh_guest_gets_start_info_and_smp_topology() {
    let k = guest("boot_check_pvh");
    let out = vmm(&[
        "--kernel",
        k.to_str().expect("path"),
        "--mem-mib",
        "96",
        "--vcpus",
        "2",
        "--cmdline",
        "pvh boot",
        "--timeout-ms",
        "30000",
    ]);
    check_boot_report(&out, "pvh", 96, 2, "pvh boot");
    let f = fields(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(hex(&f, "pvh-magic"), 0x336e_c578);
    assert_eq!(hex(&f, "pvh-info"), isola_vmm::memory::PVH_INFO_ADDR);
}

#[test]
fn guest_above_the_mmio_gap_gets_split_e820() {
    let k = guest("boot_check");
    let out =
        vmm(&["--kernel", k.to_str().expect("path"), "--mem-mib", "3584", "--cmdline", "big", "--timeout-ms", "30000"]);
    check_boot_report(&out, "linux64", 3584, 1, "big");
    assert!(reported_e820(&String::from_utf8_lossy(&out.stdout)).iter().any(|e| e.0 == 1 << 32));
}

#[test]
fn triple_fault_is_reported_with_exit_reason_and_rip() {
    let k = guest("triple_fault");
    let out = vmm(&["--kernel", k.to_str().expect("path"), "--timeout-ms", "30000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("start triple_fault"));
    assert!(stderr.contains("triple fault (KVM_EXIT_SHUTDOWN) at rip 0x10"), "{stderr}");
}

#[test]
fn runaway_guest_is_stopped_by_the_timeout() {
    let k = guest("runaway");
    let started = std::time::Instant::now();
    let out = vmm(&["--kernel", k.to_str().expect("path"), "--timeout-ms", "1500"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not finish within 1.5s; stopped at rip 0x10"), "{stderr}");
    // Not a speed target: only that the timeout, not the test harness, ended it.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn bad_inputs_are_clear_errors_not_panics() {
    let k = guest("boot_check");
    let k = k.to_str().expect("path");
    let not_elf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("not-a-kernel.txt");
    std::fs::write(&not_elf, "just text, certainly not a kernel\n".repeat(40)).expect("write");
    let huge = Path::new(env!("CARGO_TARGET_TMPDIR")).join("huge-kernel.bin");
    let f = std::fs::File::create(&huge).expect("create");
    f.set_len(8 << 20).expect("sparse file");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--kernel", "/nonexistent/vmlinux"], "cannot open kernel /nonexistent/vmlinux"),
        (vec!["--kernel", not_elf.to_str().expect("p")], "neither an ELF vmlinux nor a bzImage"),
        (vec!["--kernel", huge.to_str().expect("p"), "--mem-mib", "4"], "larger than guest RAM"),
        (vec!["--kernel", k, "--vcpus", "0"], "vcpus must be 1..=64, got 0"),
        (vec!["--kernel", k, "--mem-mib", "99999999999"], "too large"),
        (vec!["--kernel", k, "--mem-mib", "0"], "too small"),
        (vec!["--kernel", k, "--initrd", "/nonexistent/initrd"], "cannot read initramfs /nonexistent/initrd"),
        (vec!["--kernel", k, "--vsock-uds", "/tmp/x.sock", "--vsock-cid", "2"], "vsock guest CID must be 3.."),
        (vec!["--kernel", k, "--vsock-uds", "/nonexistent/dir/v.sock"], "cannot listen on /nonexistent/dir/v.sock"),
        (vec!["--kernel", k, "--fs-socket", "/nonexistent/fs.sock"], "virtio-fs needs --shared-memory"),
        (
            vec!["--kernel", k, "--shared-memory", "--fs-socket", "/nonexistent/fs.sock"],
            "cannot reach virtiofsd at /nonexistent/fs.sock",
        ),
        (vec!["--kernel", k, "--tap", "x", "--mac", "02:zz:00:00:00:01"], "bad MAC address"),
    ];
    for (args, want) in cases {
        let out = vmm(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: wanted {want:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// The vsock test guest's driver talks to real unix sockets through isola-vmm's device:
/// it connects out to host port 5000 (both packet layouts), then accepts a host
/// `CONNECT 1024` and echoes upper-cased.
#[test]
fn vsock_guest_exchanges_data_both_ways_with_host_unix_sockets() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    require_kvm();
    let k = guest("vsock_echo");
    let dir = tempfile::tempdir().expect("tmp");
    let uds = dir.path().join("v.sock");
    let host = common::host_port_5000(&uds);
    let mut child = Command::new(env!("CARGO_BIN_EXE_isola-vmm"))
        .args(["--kernel", k.to_str().expect("path"), "--timeout-ms", "60000", "--vsock-cid", "7"])
        .arg("--vsock-uds")
        .arg(&uds)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn isola-vmm");
    let mut console = Vec::new();
    let mut echoed = None;
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("console line");
        if line == "vsock: listening" {
            let mut s = UnixStream::connect(&uds).expect("connect to the vsock socket");
            s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
            s.write_all(b"CONNECT 1024\n").expect("connect line");
            let mut ok = [0u8; 14];
            s.read_exact(&mut ok).expect("OK line");
            assert!(ok.starts_with(b"OK "), "{:?}", String::from_utf8_lossy(&ok));
            s.write_all(b"hello vsock").expect("send");
            let mut back = [0u8; 11];
            s.read_exact(&mut back).expect("echo");
            echoed = Some(String::from_utf8_lossy(&back).to_string());
        }
        console.push(line);
    }
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("stderr");
    let console = console.join("\n");
    assert!(status.success(), "{console}\n{stderr}");
    assert!(console.contains("vsock: cid 7"), "{console}");
    assert!(!console.contains("FAIL"), "{console}\n{stderr}");
    let (got, rest) = host.join().expect("host thread");
    assert_eq!(got, "ping-split ping-single");
    assert!(rest.is_empty(), "nothing after the guest's shutdown");
    assert!(console.contains("vsock: got pong"), "{console}");
    assert_eq!(echoed.as_deref(), Some("HELLO VSOCK"));
    assert!(console.contains("vsock: echo done"), "{console}");
    assert!(!uds.exists(), "isola-vmm removes its socket on exit");
    assert!(!stderr.contains("dropped"), "no malformed chains: {stderr}");
}

/// With --tap and --vsock-uds both devices are announced to the guest, the tap exists
/// while the VMM runs, and it is gone after SIGKILL (we never make it persistent).
#[test]
fn net_and_vsock_devices_are_announced_and_the_tap_dies_with_the_vmm() {
    require_kvm();
    let dir = tempfile::tempdir().expect("tmp");
    let uds = dir.path().join("v.sock");
    let tap = format!("isolat{}", std::process::id() % 100_000);
    let k = guest("boot_check");
    let out = vmm(&["--kernel", k.to_str().expect("p"), "--tap", &tap, "--vsock-uds", uds.to_str().expect("p")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("virtio_mmio.device=4K@0xd0001000:5"), "{stdout}");
    assert!(stdout.contains("virtio_mmio.device=4K@0xd0002000:6"), "{stdout}");

    let idle = guest("idle");
    let mut child = Command::new(env!("CARGO_BIN_EXE_isola-vmm"))
        .args(["--kernel", idle.to_str().expect("p"), "--tap", &tap, "--console", "none"])
        .spawn()
        .expect("spawn");
    let present = |t: &str| Command::new("ip").args(["link", "show", t]).output().is_ok_and(|o| o.status.success());
    let up = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        present(&tap)
    });
    assert!(up, "tap {tap} exists while the VMM runs");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(!present(&tap), "tap {tap} outlived its VMM");
}

/// The net test guest's driver asks (ARP) for 10.99.0.1 through isola-vmm's virtio-net
/// and a real tap in a network namespace the test creates, and prints the answer.
#[test]
fn net_test_guest_gets_an_arp_answer_through_a_real_tap() {
    require_kvm();
    assert!(nix::unistd::geteuid().is_root(), "needs root for a network namespace (does not skip)");
    let ns = format!("isola-ng-{}", std::process::id());
    let ip = |args: &[&str]| Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(ip(&["netns", "add", &ns]).status.success());
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = Del(ns.clone());
    let k = guest("net_arp");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_isola-vmm"), "--kernel", k.to_str().expect("p")])
        .args(["--tap", "tap0", "--timeout-ms", "60000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("isola-vmm in the namespace");
    // The VMM creates the tap; give it the address the guest asks for.
    let mut mac = None;
    for _ in 0..500 {
        let out = ip(&["-n", &ns, "-o", "link", "show", "tap0"]);
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            mac = text.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).map(str::to_string);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mac = mac.expect("tap0 appears in the namespace");
    assert!(ip(&["-n", &ns, "addr", "add", "10.99.0.1/24", "dev", "tap0"]).status.success());
    assert!(ip(&["-n", &ns, "link", "set", "tap0", "up"]).status.success());
    let out = child.wait_with_output().expect("isola-vmm ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("net: 10.99.0.1 is at {mac}")), "{stdout}");
}
