//! Where the guest kernel, initramfs and helper binaries are found.

use std::path::{Path, PathBuf};

/// Guest kernel and initramfs installed by `scripts/setup.sh`; `ISOLA_GUEST_DIR` overrides.
pub fn guest_dir() -> PathBuf {
    std::env::var_os("ISOLA_GUEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/lib/isola/guest"))
}

/// The bzImage: its decompressor places the kernel at a random offset (KASLR) on
/// both backends; the `vmlinux` beside it boots at its link address (for loaders and
/// benchmarks that want the ELF).
pub fn default_kernel() -> PathBuf {
    guest_dir().join("bzImage")
}

pub fn default_initrd() -> PathBuf {
    guest_dir().join("initramfs.cpio")
}

/// Finds a helper binary: next to the running executable first (a cargo build or an
/// install puts them together), then on PATH.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let beside = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join(name)));
    if let Some(p) = beside.filter(|p| p.is_file()) {
        return Some(p);
    }
    // Test binaries live one level down, in target/<profile>/deps.
    let up = std::env::current_exe().ok().and_then(|p| p.parent()?.parent().map(|d| d.join(name)));
    if let Some(p) = up.filter(|p| p.is_file()) {
        return Some(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_binaries_on_path_and_not_missing_ones() {
        assert!(find_binary("sh").is_some(), "sh is on every PATH");
        assert!(find_binary("isola-definitely-not-a-binary").is_none());
    }
}
