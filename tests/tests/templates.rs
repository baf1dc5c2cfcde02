//! Templates: `isola run` restoring an isola-vmm snapshot of a booted guest instead of
//! booting. On hardware KVM (nested, scripts/nested/tests.sh): a template is made,
//! then two runs at once are restored from it, each with its own MAC, address, RNG
//! and a right clock, running a container over virtio-fs that reaches the outside;
//! a clone's balloon takes a resize; a broken template falls back to a cold boot and
//! says so; nothing is left behind.
//! Elsewhere (QEMU here): templates are refused by name and runs never make one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use isola_e2e::{busybox_rootfs, isola_env, leaks, require_binary};
use isola_sandbox::{detect_kvm, KvmKind};

/// The test's own template directory and configuration (templates on, isola-vmm).
struct Env {
    _dir: tempfile::TempDir,
    templates: PathBuf,
    config: PathBuf,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let templates = dir.path().join("templates");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "hypervisor = \"isola-vmm\"\ntemplates = true\n").expect("config");
        Env { templates, config, _dir: dir }
    }

    fn isola(&self, args: &[&str]) -> (String, String, i32) {
        isola_env(args, None, &[("ISOLA_TEMPLATE_DIR", &self.templates), ("ISOLA_CONFIG", &self.config)])
    }

    /// The keys `isola template ls` shows.
    fn keys(&self) -> Vec<String> {
        let (out, err, code) = self.isola(&["template", "ls"]);
        assert_eq!(code, 0, "{err}");
        out.lines().skip(1).filter_map(|l| l.split_whitespace().next().map(String::from)).collect()
    }
}

fn inspect(env: &Env, name: &str) -> serde_json::Value {
    let (out, err, code) = env.isola(&["inspect", name]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<serde_json::Value>(&out).expect("inspect json")["state"].clone()
}

/// What a clone reports about itself, once its container has run.
#[derive(Debug)]
struct Clone {
    mac: String,
    addr: String,
    random: String,
    /// The guest's `date +%s`, and the host's clock just before `isola run` and just
    /// after the report was read: a right clock lies between the two.
    clock: i64,
    window: (i64, i64),
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in:\n{out}")).trim()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// `isola run -d` of a container that reports on itself and says hello to the outside.
fn run_clone(env: &Env, name: &str, rootfs: &Path, outside: &str) -> Clone {
    let script = format!(
        "echo mac=$(cat /sys/class/net/eth0/address); echo addr=$(ip -4 addr show eth0 | grep -o 'inet [0-9./]*'); \
         echo random=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'); echo clock=$(date +%s); \
         echo hello-from-{name} | nc {outside}; echo done; sleep 600"
    );
    let r = rootfs.display().to_string();
    let before = now_unix();
    let (_, err, code) = env.isola(&["run", "-d", "--name", name, "--rootfs", &r, "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{err}");
    // A bound for a hang, not a speed target: two clones at once in an emulated L1 have
    // taken over a minute to print a few lines.
    let until = Instant::now() + Duration::from_secs(240);
    let out = loop {
        let (out, _, _) = env.isola(&["logs", name]);
        if out.contains("done") {
            break out;
        }
        assert!(Instant::now() < until, "{name} did not finish its report:\n{out}");
        std::thread::sleep(Duration::from_millis(200));
    };
    Clone {
        mac: field(&out, "mac=").into(),
        addr: field(&out, "addr=").trim_start_matches("inet ").into(),
        random: field(&out, "random=").into(),
        clock: field(&out, "clock=").parse::<i64>().expect("a date"),
        window: (before, now_unix()),
    }
}

#[test]
fn runs_restore_from_a_template_each_with_its_own_identity_and_a_broken_one_falls_back() {
    require_binary("isola-vmm", "cargo build");
    let env = Env::new();
    let kvm = detect_kvm();
    if kvm != KvmKind::Hardware {
        // Templates are isola-vmm snapshots, and Linux boots under isola-vmm only on
        // hardware KVM (scripts/nested/tests.sh runs this test there). Here: a clear
        // refusal, and a run neither restores nor makes one.
        eprintln!("NOT RUN HERE: restoring Linux needs hardware KVM; this host has {}", kvm.describe());
        std::fs::write(&env.config, "hypervisor = \"qemu\"\n").expect("config");
        let (_, err, code) = env.isola(&["template", "warm"]);
        assert_ne!(code, 0);
        assert!(err.contains("templates are isola-vmm snapshots"), "{err}");
        let r = busybox_rootfs().display().to_string();
        let (out, err, code) = env.isola(&["run", "--rootfs", &r, "--", "echo", "cold"]);
        assert_eq!((out.as_str(), code), ("cold\n", 0), "{err}");
        assert!(env.keys().is_empty() && !env.templates.exists(), "no template on QEMU");
        return;
    }
    let rootfs = busybox_rootfs();
    let before = leaks::snapshot();
    let (out, err, code) = env.isola(&["template", "warm"]);
    assert_eq!(code, 0, "{err}");
    let key = out.split_whitespace().next().expect("the key").to_string();
    assert_eq!(env.keys(), std::slice::from_ref(&key));
    let (again, _, code) = env.isola(&["template", "warm"]);
    assert!(code == 0 && again.contains("made already"), "{again}");
    // A clone that kept the template's clock would be behind by at least this much
    // (less the time it ran before `date`), so it falls before its window.
    std::thread::sleep(Duration::from_secs(10));

    let outside = isola_e2e::outside::Outside::new(7);
    let listener = outside.listen(outside.addr);
    let target = format!("{} {}", outside.addr, listener.local_addr().expect("addr").port());
    let accept = std::thread::spawn(move || {
        (0..2)
            .map(|_| {
                let (mut c, _) = listener.accept().expect("a clone connects");
                let mut s = String::new();
                std::io::Read::read_to_string(&mut c, &mut s).expect("read");
                s
            })
            .collect::<Vec<String>>()
    });
    let clones: Vec<Clone> = std::thread::scope(|s| {
        let runs: Vec<_> = ["e2e-tpl-a", "e2e-tpl-b"]
            .map(|n| {
                let (env, rootfs, target) = (&env, &rootfs, &target);
                s.spawn(move || run_clone(env, n, rootfs, target))
            })
            .into_iter()
            .collect();
        runs.into_iter().map(|h| h.join().expect("clone run")).collect()
    });
    for (name, c) in ["e2e-tpl-a", "e2e-tpl-b"].iter().zip(&clones) {
        let st = inspect(&env, name);
        assert_eq!(st["template"].as_str(), Some(key.as_str()), "{name} was restored from the template: {st}");
        let net = &st["net"];
        assert_eq!(c.mac, net["mac"].as_str().expect("mac"), "{name} has the MAC the host gave it");
        assert_eq!(c.addr, format!("{}/16", net["ip"].as_str().expect("ip")), "{name}");
        // The window, not a tolerance around one reading: under nested KVM the report
        // reaches the test seconds after `date` ran (the clones run at once, and each
        // `isola logs` is a process in an emulated L1).
        let (from, to) = c.window;
        assert!(
            (from - 1..=to + 1).contains(&c.clock),
            "{name}'s clock says {} while the host's went from {from} to {to} around its run",
            c.clock
        );
    }
    let (a, b) = (&clones[0], &clones[1]);
    assert_ne!(a.mac, b.mac);
    assert_ne!(a.addr, b.addr);
    assert_ne!(a.random, b.random, "two clones must not share RNG state");
    let mut got = accept.join().expect("accept");
    got.sort();
    assert_eq!(got, ["hello-from-e2e-tpl-a\n", "hello-from-e2e-tpl-b\n"], "both reach the outside");
    drop(outside);
    // A clone's balloon is its own and live: it takes the target it is given (after a
    // restore the guest reads its config again) and the guest hands the pages over.
    let (out, err, code) = env.isola(&["update", "-m", "64m", "--json", "e2e-tpl-a"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).expect("update json");
    let (target, actual) = (r["balloon_target_mib"].as_u64(), r["balloon_actual_mib"].as_u64());
    assert!(target.is_some_and(|t| t > 0), "{r}");
    assert!(target.zip(actual).is_some_and(|(t, a)| t.abs_diff(a) <= 1), "the clone's guest filled its balloon: {r}");
    let (_, err, code) = env.isola(&["rm", "-f", "e2e-tpl-a", "e2e-tpl-b"]);
    assert_eq!(code, 0, "{err}");

    // A broken template: the run boots cold, says why, and the template is gone.
    let state = env.templates.join(&key).join("snapshot");
    for f in std::fs::read_dir(&state).expect("snapshot dir").flatten() {
        if f.file_name() != "memory" {
            std::fs::write(f.path(), b"not a snapshot").expect("break it");
        }
    }
    let r = rootfs.display().to_string();
    let (out, err, code) = env.isola(&["run", "--name", "e2e-tpl-cold", "--rootfs", &r, "--", "echo", "cold"]);
    assert_eq!((out.as_str(), code), ("cold\n", 0), "{err}");
    assert!(err.contains(&format!("template {key} could not be restored")), "{err}");
    // The run made a good one again in the background.
    let until = Instant::now() + Duration::from_secs(120);
    while env.keys() != std::slice::from_ref(&key) {
        assert!(Instant::now() < until, "no template made again after the broken one");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, err, code) = env.isola(&["template", "rm", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert!(env.keys().is_empty());
    let left = leaks::settle(&before, 30);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Images on disks: the template holds an empty disk slot and no virtio-fs; each
/// clone restored from it fills the slot with its own image's disk (two clones of
/// one template, two images, each sees its own), maps the template's memory
/// copy-on-write (no shared memory, no virtiofsd), and leaves nothing.
#[test]
fn clones_fill_the_templates_disk_slot_each_with_their_own_image() {
    require_binary("isola-vmm", "cargo build");
    let env = Env::new();
    let store = tempfile::tempdir().expect("store");
    let isola = |args: &[&str]| {
        isola_env(
            args,
            None,
            &[("ISOLA_TEMPLATE_DIR", &env.templates), ("ISOLA_CONFIG", &env.config), ("ISOLA_IMAGE_DIR", store.path())],
        )
    };
    let kvm = detect_kvm();
    if kvm != KvmKind::Hardware {
        eprintln!("NOT RUN HERE: restoring Linux needs hardware KVM; this host has {}", kvm.describe());
        std::fs::write(&env.config, "hypervisor = \"qemu\"\n").expect("config");
        let (_, err, code) = isola(&["template", "warm", "--image-disk"]);
        assert_ne!(code, 0);
        assert!(err.contains("templates are isola-vmm snapshots"), "{err}");
        return;
    }
    let before = leaks::snapshot();
    let mut images = Vec::new();
    for (tag, motd) in [("t1", "motd of image one"), ("t2", "motd of image two")] {
        let layout = tempfile::tempdir().expect("layout");
        isola_e2e::registry::build_layout(layout.path(), tag, motd);
        let dir = layout.path().display().to_string();
        let (out, err, code) = isola(&["import", "--name", &format!("test/disk:{tag}"), &dir]);
        assert_eq!(code, 0, "{err}");
        images.push(out.split_whitespace().next().expect("the image's name").to_string());
    }
    let (out, err, code) = isola(&["template", "warm", "--image-disk"]);
    assert_eq!(code, 0, "{err}");
    let key = out.split_whitespace().next().expect("the key").to_string();
    let script = "grep ' / / ' /proc/self/mountinfo; cat /etc/motd; echo done; exec busybox sleep 600";
    for (name, image) in ["e2e-tpl-disk1", "e2e-tpl-disk2"].iter().zip(&images) {
        let (_, err, code) = isola(&["run", "-d", "--name", name, image, "sh", "-c", script]);
        assert_eq!(code, 0, "{err}");
    }
    for (name, motd) in [("e2e-tpl-disk1", "motd of image one"), ("e2e-tpl-disk2", "motd of image two")] {
        let until = Instant::now() + Duration::from_secs(240);
        let out = loop {
            let (out, _, _) = isola(&["logs", name]);
            if out.contains("done") {
                break out;
            }
            assert!(Instant::now() < until, "{name} did not report:\n{out}");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(out.contains(&format!("lowerdir=/run/isola/containers/{name}/image")), "{name} on its disk: {out}");
        assert!(out.contains(&format!("{motd}\n")), "{name} sees its own image: {out}");
        let (st, err, code) = isola(&["inspect", name]);
        assert_eq!(code, 0, "{err}");
        let st = serde_json::from_str::<serde_json::Value>(&st).expect("inspect json")["state"].clone();
        assert_eq!(st["template"].as_str(), Some(key.as_str()), "{name} was restored: {st}");
        assert!(st["shared_dir"].is_null(), "{name} has no share: {st}");
        let pid = st["vmm_pid"].as_i64().expect("vmm pid");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("vmm cmdline");
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!cmdline.contains("--shared-memory") && cmdline.contains("--disk "), "{cmdline}");
    }
    let (_, err, code) = isola(&["rm", "-f", "e2e-tpl-disk1", "e2e-tpl-disk2"]);
    assert_eq!(code, 0, "{err}");
    let (_, err, code) = isola(&["template", "rm", "--all"]);
    assert_eq!(code, 0, "{err}");
    let left = leaks::settle(&before, 30);
    assert!(left.is_empty(), "left behind: {left:?}");
}
