//! The kernel interface the agent's logic goes through, so the order of mounts
//! (and later namespaces and exec) is testable without root.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

#[derive(Debug, thiserror::Error)]
pub enum SyscallError {
    #[error("mkdir {path}: {source}")]
    Mkdir { path: PathBuf, source: std::io::Error },
    #[error("mount {fstype} on {target}: {source}")]
    Mount { fstype: String, target: PathBuf, source: nix::Error },
}

pub trait Syscall {
    fn mkdir_all(&self, path: &Path) -> Result<(), SyscallError>;
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError>;
}

/// The real kernel.
pub struct Linux;

impl Syscall for Linux {
    fn mkdir_all(&self, path: &Path) -> Result<(), SyscallError> {
        std::fs::create_dir_all(path).map_err(|source| SyscallError::Mkdir { path: path.to_path_buf(), source })
    }

    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError> {
        nix::mount::mount(Some(source), target, Some(fstype), flags, data).map_err(|source| SyscallError::Mount {
            fstype: fstype.to_string(),
            target: target.to_path_buf(),
            source,
        })
    }
}

/// Records calls instead of making them; used by unit tests.
#[derive(Default)]
pub struct Recording {
    pub calls: std::sync::Mutex<Vec<String>>,
    /// Fail the mount whose target equals this path.
    pub fail_mount: Option<PathBuf>,
}

impl Recording {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: String) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(call);
        }
    }
}

impl Syscall for Recording {
    fn mkdir_all(&self, path: &Path) -> Result<(), SyscallError> {
        self.record(format!("mkdir {}", path.display()));
        Ok(())
    }

    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError> {
        self.record(format!(
            "mount {source} {} {fstype} {:#x} {}",
            target.display(),
            flags.bits(),
            data.unwrap_or("-")
        ));
        if self.fail_mount.as_deref() == Some(target) {
            return Err(SyscallError::Mount {
                fstype: fstype.into(),
                target: target.into(),
                source: nix::Error::EPERM,
            });
        }
        Ok(())
    }
}
