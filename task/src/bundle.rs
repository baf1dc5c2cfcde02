//! What a container's bundle keeps for the shim's afterlife: the record written at
//! Create, and the cleanup `delete` does from it when the shim died.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const RECORD: &str = "isola.json";

/// What a bundle needs for cleanup if the shim dies: written at Create.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRecord {
    /// The sandbox's state directory.
    pub vm: PathBuf,
    /// This container's delete ends the VM.
    pub owner: bool,
    pub shared_dir: Option<PathBuf>,
    /// A pod member's own host cgroup directories (one per v1 controller).
    #[serde(default)]
    pub cgroup_dirs: Vec<PathBuf>,
}

impl BundleRecord {
    pub fn save(&self, bundle: &str) {
        let path = Path::new(bundle).join(RECORD);
        if let Err(e) = isola_sandbox::files::write_json_atomic(&path, self) {
            log::warn!("writing {}: {e}", path.display());
        }
    }

    /// Forgets the record (a boot that failed cleaned up after itself).
    pub fn remove(bundle: &str) {
        let _ = std::fs::remove_file(Path::new(bundle).join(RECORD));
    }

    pub fn load(bundle: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(bundle.join(RECORD)).ok()?).ok()
    }
}

/// Undoes what a dead shim left for container `id` in `bundle`: the VM if it owned it
/// (processes, taps, sockets, mounts, directory), else its rootfs under the share.
pub fn cleanup_bundle(bundle: &Path, id: &str) {
    remove_dead_socket(bundle);
    let Some(r) = BundleRecord::load(bundle) else { return };
    if r.owner {
        let st = isola_sandbox::state::SandboxState::load(&r.vm).ok();
        isola_sandbox::state::cleanup(&r.vm, st.as_ref());
    } else if let Some(shared) = &r.shared_dir {
        crate::rootfs::release(shared, id);
    }
    // Only a cgroup: the record is ours, but a path in it never reaches anything else.
    for d in r.cgroup_dirs.iter().filter(|d| d.starts_with("/sys/fs/cgroup/")) {
        isola_sandbox::cgroup::remove_dir_of(d);
    }
}

/// The dead shim's ttrpc socket (named in the bundle's `address` file): removed once
/// nothing answers on it, so a killed shim leaves no socket behind.
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else { return };
    let path = PathBuf::from(address.trim().trim_start_matches("unix://"));
    if path.as_os_str().is_empty() || std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return;
    }
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("removing {}: {e}", path.display());
        }
    }
}
