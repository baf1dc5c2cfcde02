//! What sandboxes hold on this host — processes, taps, network namespaces, mounts,
//! state directories, uid leases, nftables chains, iptables rules, cgroups — as one snapshot, so a
//! leak check (the chaos test, `isola bench soak`) compares before and after.

use std::collections::BTreeSet;
use std::path::Path;

/// Programs the task engine's adapters run beside the sandboxes' own
/// ([`crate::backend::PROGRAMS`]): the shim, and its per-process host stand-ins (their
/// argv[0], `isola_task::standin::NAME`, which a test there keeps equal to this).
pub const ADAPTER_PROGRAMS: &[&str] = &["containerd-shim-isola-v2", "isola-task"];

/// Whether a process named `base` (its argv[0]'s file name) is one of ours.
pub fn is_ours(base: &str) -> bool {
    crate::backend::PROGRAMS.contains(&base) || ADAPTER_PROGRAMS.contains(&base)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub items: BTreeSet<String>,
}

fn names_in(dir: &str, prefix: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| keep(n))
                .map(|n| format!("{prefix} {n}"))
                .collect()
        })
        .unwrap_or_default()
}

fn processes() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        // A zombie is reaped by its parent; only running processes count.
        if !crate::procfs::running(pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0);
        let base = Path::new(argv0.as_ref()).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        if is_ours(&base) {
            out.push(format!("process {pid} {base}"));
        }
    }
    out
}

fn mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.contains("isola"))
        .map(|m| format!("mount {m}"))
        .collect()
}

fn iptables() -> Vec<String> {
    let out = std::process::Command::new("iptables-save").output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        // The shared rules (like the bridge, made once and kept) are not a sandbox's.
        .filter(|l| l.starts_with("-A") && l.contains("isola") && !crate::netfilter::is_shared_rule(l))
        .map(|l| format!("iptables {l}"))
        .collect()
}

fn cgroups() -> Vec<String> {
    ["/sys/fs/cgroup/isola", "/sys/fs/cgroup/memory/isola"]
        .iter()
        // Control files have a dot (memory.max); sandbox cgroups are `<name>-<hash>`.
        .flat_map(|d| names_in(d, "cgroup", |n| !n.contains('.')))
        .collect()
}

/// A sandbox's tap on the bridge (`isola` + 8 hex digits, [`crate::net::NetState`]).
fn is_sandbox_tap(name: &str) -> bool {
    name.strip_prefix("isola").is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What is on the host now.
pub fn snapshot() -> Snapshot {
    let state_root = crate::state::default_root();
    let mut items = BTreeSet::new();
    items.extend(processes());
    items.extend(names_in("/sys/class/net", "link", is_sandbox_tap));
    items.extend(names_in("/run/netns", "netns", |_| true));
    items.extend(mounts());
    items.extend(names_in(&state_root.display().to_string(), "state", |n| {
        !n.starts_with('.') || n.starts_with(crate::state::STAGING_PREFIX)
    }));
    let pool_root = crate::state::pool_root(&state_root);
    items.extend(names_in(&pool_root.display().to_string(), "pool state", |n| !n.starts_with('.')));
    let leases = crate::identity::default_leases().display().to_string();
    items.extend(names_in(&leases, "uid lease", |n| !n.starts_with('.')));
    items.extend(crate::netfilter::port_chains().into_iter().map(|c| format!("nft chain {c}")));
    items.extend(iptables());
    items.extend(cgroups());
    Snapshot { items }
}

/// What `after` has that `before` did not.
pub fn leaked(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    after.items.difference(&before.items).cloned().collect()
}

/// Waits up to `secs` for the host to be back to `before` (processes end and the
/// kernel drops taps asynchronously); the leaks that remain.
pub fn settle(before: &Snapshot, secs: u64) -> Vec<String> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let l = leaked(before, &snapshot());
        if l.is_empty() || std::time::Instant::now() > until {
            return l;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `pub const EXE` under `src/backend/` is a program a sandbox starts; a new
    /// backend module whose program the leak check does not know would let its leaks pass.
    #[test]
    fn the_leak_check_knows_every_program_a_backend_module_starts() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/backend");
        let mut found = Vec::new();
        for e in std::fs::read_dir(&dir).expect("src/backend") {
            let text = std::fs::read_to_string(e.expect("entry").path()).expect("read");
            for l in text.lines() {
                if let Some(rest) = l.trim().strip_prefix("pub const EXE: &str = \"") {
                    found.push(rest.trim_end_matches("\";").to_string());
                }
            }
        }
        assert!(found.len() >= 6, "backend programs found: {found:?}");
        for exe in &found {
            assert!(is_ours(exe), "{exe} is started by a backend module but not in the leak inventory");
        }
        assert!(is_ours("isola-ports"), "the port forwarder counts");
    }

    #[test]
    fn new_items_are_leaks_and_old_ones_are_not() {
        let before = Snapshot { items: ["link isola1".to_string()].into() };
        let after = Snapshot { items: ["link isola1".to_string(), "mount /run/isola/x/shared".to_string()].into() };
        assert_eq!(leaked(&before, &after), ["mount /run/isola/x/shared"]);
        assert!(leaked(&after, &before).is_empty());
        assert!(is_sandbox_tap("isola0a1b2c3d") && !is_sandbox_tap("isola0") && !is_sandbox_tap("isolacni0"));
    }
}
