//! Templates: an isola-vmm snapshot of a guest booted as far as its agent answering,
//! before it was given any identity (hostname, network, share), one per configuration
//! under `/var/lib/isola/templates/<key>/`. A sandbox of that configuration is restored
//! from it instead of booting ([`crate::sandbox::Sandbox::start`]), then told it is a
//! restored copy (fresh entropy, the clock) and configured as usual. Templates are
//! made by [`crate::sandbox::make_template`]; this module only names and keeps them.
//!
//! The key hashes what the snapshot depends on: isola-vmm, the kernel and initramfs
//! (path, size, modification time), the command line, memory, vCPUs and the devices.
//! A rebuilt binary or guest therefore never matches an old template; the snapshot's
//! own header check catches what the key cannot (another KVM), and a template that
//! cannot be restored is removed and the sandbox booted cold.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hypervisor::{BootSpec, HypervisorError, HypervisorKind};
use crate::names::file_id;
use crate::state::{self, Creator};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("templates are isola-vmm snapshots; this configuration boots {0}")]
    NotIsolaVmm(HypervisorKind),
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("no template {0}")]
    NotFound(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TemplateError {
    let what = what.into();
    move |source| TemplateError::Io { what, source }
}

/// Where templates live: `ISOLA_TEMPLATE_DIR`, else `/var/lib/isola/templates`.
pub fn root() -> PathBuf {
    std::env::var_os("ISOLA_TEMPLATE_DIR").map(PathBuf::from).unwrap_or_else(|| "/var/lib/isola/templates".into())
}

/// The snapshot's devices besides vsock and the console, which every sandbox has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Devices {
    /// virtio-fs (virtiofsd is installed).
    pub fs: bool,
    /// virtio-net (the bridge or a pod's network).
    pub net: bool,
    /// Read-only disk slots (image root filesystems): empty placeholders in the
    /// template, each clone's own image file once restored.
    #[serde(default)]
    pub disks: u8,
    /// virtio-balloon (a clone resizes and reports free pages like a cold sandbox).
    #[serde(default)]
    pub balloon: bool,
}

impl Devices {
    /// A sandbox's: virtio-fs when it wants a share and virtiofsd is installed.
    pub fn detect(net: bool, share: bool, disks: usize, balloon: bool) -> Self {
        let fs = share && crate::backend::virtiofsd::find().is_some();
        Devices { fs, net, disks: u8::try_from(disks).unwrap_or(u8::MAX), balloon }
    }
}

/// The key of the configuration a template stands for.
pub fn key(hypervisor: HypervisorKind, b: &BootSpec, d: Devices) -> Result<String, TemplateError> {
    if hypervisor != HypervisorKind::IsolaVmm {
        return Err(TemplateError::NotIsolaVmm(hypervisor));
    }
    let vmm = crate::backend::isola_vmm::find()?;
    let text =
        format!("{}|{}|fs={}|net={}|disks={}|balloon={}", file_id(&vmm), b.identity(), d.fs, d.net, d.disks, d.balloon);
    Ok(crate::names::short_hash(&text, 8))
}

/// `template.json`: what the template was made from, for `isola template ls`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TemplateMeta {
    pub key: String,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub mem_mib: u64,
    pub vcpus: u8,
    pub devices: Devices,
    pub created_unix: u64,
    /// How long its cold boot took to the agent's first answer.
    pub boot_ms: u64,
    /// What isola-vmm said of the snapshot (`ok memory_bytes=… ms=…`).
    pub snapshot: String,
}

pub(crate) const META: &str = "template.json";

#[derive(Clone, Debug)]
pub struct Template {
    pub dir: PathBuf,
    pub meta: TemplateMeta,
}

impl Template {
    /// The isola-vmm snapshot directory (`--restore`).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("snapshot")
    }

    /// Bytes on disk (the memory file's holes not counted).
    pub fn disk_bytes(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = std::fs::read_dir(self.snapshot_dir()) else { return 0 };
        entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.blocks() * 512).sum()
    }

    /// Whether isola-vmm, the kernel or the initramfs changed since it was made (its
    /// key no longer matches theirs): no sandbox restores it any more.
    pub fn stale(&self) -> bool {
        let m = &self.meta;
        let boot = BootSpec {
            kernel: m.kernel.clone(),
            initrd: m.initrd.clone(),
            cmdline: m.cmdline.clone(),
            mem_mib: m.mem_mib,
            vcpus: m.vcpus,
            timeout: std::time::Duration::ZERO,
            accel: crate::hypervisor::QemuAccel::Auto,
        };
        key(HypervisorKind::IsolaVmm, &boot, m.devices).ok().is_none_or(|k| k != m.key)
    }

    fn load(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(META)).ok()?;
        Some(Template { dir: dir.to_path_buf(), meta: serde_json::from_str(&text).ok()? })
    }
}

/// The template for `key`, if one is made.
pub fn find(root: &Path, key: &str) -> Option<Template> {
    Template::load(&root.join(key))
}

/// Every template, oldest first; what a maker killed midway left is removed on the way.
pub fn list(root: &Path) -> Vec<Template> {
    let Ok(entries) = std::fs::read_dir(root) else { return vec![] };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(state::STAGING_PREFIX) {
            if state::staging_creator(&name).is_some_and(|c| !c.alive()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
            continue;
        }
        if let Some(t) = Template::load(&e.path()) {
            out.push(t);
        }
    }
    out.sort_by_key(|t| t.meta.created_unix);
    out
}

/// Removes the template `key`.
pub fn remove(root: &Path, key: &str) -> Result<(), TemplateError> {
    let dir = root.join(key);
    if !dir.join(META).exists() {
        return Err(TemplateError::NotFound(key.into()));
    }
    // Renamed away first: a sandbox starting now either finds it whole or not at all.
    let gone = state::staging_dir(root, &format!("rm-{key}"), Creator::me());
    std::fs::rename(&dir, &gone).map_err(io(format!("removing {}", dir.display())))?;
    std::fs::remove_dir_all(&gone).map_err(io(format!("removing {}", gone.display())))
}

/// Whether a live process is making `key` now (its staging directory is there).
/// The template `key` that another live process is making, once it is placed (waiting
/// up to `timeout`); None when that maker ended without placing one, or time ran out.
pub fn wait_for_maker(root: &Path, key: &str, timeout: std::time::Duration) -> Option<Template> {
    let until = std::time::Instant::now() + timeout;
    loop {
        if let Some(t) = find(root, key) {
            return Some(t);
        }
        if !being_made(root, key) || std::time::Instant::now() >= until {
            return find(root, key);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub(crate) fn being_made(root: &Path, key: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(root) else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.ends_with(&format!("-{key}")) && state::staging_creator(&name).is_some_and(|c| c.alive())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, created_unix: u64) -> TemplateMeta {
        TemplateMeta {
            key: key.into(),
            kernel: "/k".into(),
            initrd: None,
            cmdline: "c".into(),
            mem_mib: 256,
            vcpus: 1,
            devices: Devices { fs: true, net: false, disks: 0, balloon: true },
            created_unix,
            boot_ms: 1,
            snapshot: "ok".into(),
        }
    }

    fn place(root: &Path, m: &TemplateMeta) {
        let d = root.join(&m.key);
        std::fs::create_dir_all(d.join("snapshot")).expect("dir");
        std::fs::write(d.join(META), serde_json::to_vec(m).expect("json")).expect("meta");
    }

    /// A caller that finds the template being made waits for it instead of failing,
    /// and does not wait on a maker that died.
    #[test]
    fn a_template_being_made_is_waited_for_and_a_dead_makers_is_not() {
        let root = tempfile::tempdir().expect("tmp");
        let mine = state::staging_dir(root.path(), "eeee", Creator::me());
        std::fs::create_dir_all(&mine).expect("being made");
        let r = root.path().to_path_buf();
        let maker = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            place(&r, &meta("eeee", 3));
            let _ = std::fs::remove_dir_all(state::staging_dir(&r, "eeee", Creator::me()));
        });
        let t = wait_for_maker(root.path(), "eeee", std::time::Duration::from_secs(30)).expect("waited for it");
        assert_eq!(t.meta.key, "eeee");
        maker.join().expect("maker");
        let dead = Creator { pid: i32::MAX - 1, start_ticks: 1 };
        std::fs::create_dir_all(state::staging_dir(root.path(), "ffff", Some(dead))).expect("debris");
        let started = std::time::Instant::now();
        assert!(wait_for_maker(root.path(), "ffff", std::time::Duration::from_secs(30)).is_none());
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "no wait on a dead maker");
    }

    #[test]
    fn templates_are_listed_found_and_removed_and_a_dead_makers_debris_goes() {
        let root = tempfile::tempdir().expect("tmp");
        place(root.path(), &meta("bbbb", 2));
        place(root.path(), &meta("aaaa", 1));
        // Half made by a process that died: no meta, a staging name with a dead creator.
        let dead = Creator { pid: i32::MAX - 1, start_ticks: 1 };
        let debris = state::staging_dir(root.path(), "cccc", Some(dead));
        std::fs::create_dir_all(debris.join("snapshot")).expect("debris");
        // Being made right now by a live one: kept, not listed.
        let mine = state::staging_dir(root.path(), "dddd", Creator::me());
        std::fs::create_dir_all(&mine).expect("mine");
        let keys: Vec<String> = list(root.path()).into_iter().map(|t| t.meta.key).collect();
        assert!(find(root.path(), "aaaa").expect("found").stale(), "made from a kernel that is not there");
        assert_eq!(keys, ["aaaa", "bbbb"], "oldest first, nothing half made");
        assert!(!debris.exists(), "a dead maker's directory is removed");
        assert!(mine.exists(), "a live maker's is not");
        assert!(being_made(root.path(), "dddd") && !being_made(root.path(), "aaaa"));
        assert_eq!(find(root.path(), "aaaa").expect("found").snapshot_dir(), root.path().join("aaaa/snapshot"));
        remove(root.path(), "aaaa").expect("rm");
        assert!(find(root.path(), "aaaa").is_none());
        assert!(matches!(remove(root.path(), "aaaa"), Err(TemplateError::NotFound(_))));
        assert!(find(root.path(), "zzzz").is_none());
    }

    #[test]
    fn the_key_follows_the_guest_and_the_devices_and_only_isola_vmm_has_one() {
        let d = tempfile::tempdir().expect("tmp");
        let mut boot = crate::hypervisor::test_spec(d.path());
        let dev = Devices { fs: true, net: true, disks: 0, balloon: true };
        assert!(matches!(key(HypervisorKind::Qemu, &boot, dev), Err(TemplateError::NotIsolaVmm(_))));
        let vmm = HypervisorKind::IsolaVmm;
        let k = key(vmm, &boot, dev).expect("isola-vmm is built beside the tests");
        assert_eq!(key(vmm, &boot, dev).expect("again"), k, "stable");
        assert_ne!(key(vmm, &boot, Devices { net: false, ..dev }).expect("k"), k, "devices");
        assert_ne!(key(vmm, &boot, Devices { disks: 1, ..dev }).expect("k"), k, "disk slots");
        assert_ne!(key(vmm, &boot, Devices { fs: false, ..dev }).expect("k"), k, "a share");
        assert_ne!(key(vmm, &boot, Devices { balloon: false, ..dev }).expect("k"), k, "a balloon");
        boot.mem_mib += 1;
        assert_ne!(key(vmm, &boot, dev).expect("k"), k, "memory");
        boot.mem_mib -= 1;
        std::fs::write(&boot.kernel, b"a rebuilt kernel").expect("rebuild");
        assert_ne!(key(vmm, &boot, dev).expect("k"), k, "a rebuilt kernel");
    }
}
