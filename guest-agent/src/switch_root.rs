//! The initramfs root (rootfs) cannot be pivot_root'ed away from, which containers
//! need. So PID 1 first moves itself onto a tmpfs: copy /init there, move the tmpfs
//! over /, chroot into it and re-exec (what `switch_root` does).

use std::ffi::CString;
use std::path::Path;

use nix::mount::MsFlags;

use crate::syscall::{Syscall, SyscallError};

/// Set in the environment of the re-executed init.
pub const SWITCHED_ENV: &str = "ISOLA_SWITCHED_ROOT";
const NEW_ROOT: &str = "/newroot";

/// Everything up to the exec, through `sys` so the order is testable.
pub fn prepare(sys: &dyn Syscall, init_bytes: &[u8]) -> Result<(), SyscallError> {
    let new_root = Path::new(NEW_ROOT);
    sys.mkdir_all(new_root)?;
    sys.mount("tmpfs", new_root, "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))?;
    sys.write_file(&new_root.join("init"), init_bytes)?;
    sys.chdir(new_root)?;
    sys.mount(".", Path::new("/"), "", MsFlags::MS_MOVE, None)?;
    Ok(())
}

/// Switches and re-executes /init; returns only on failure (then we carry on in rootfs).
pub fn switch(sys: &dyn Syscall) -> Result<(), String> {
    let init = std::fs::read("/init").map_err(|e| format!("reading /init: {e}"))?;
    prepare(sys, &init).map_err(|e| e.to_string())?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir: {e}"))?;
    std::fs::set_permissions("/init", std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("chmod /init: {e}"))?;
    let path = CString::new("/init").map_err(|e| e.to_string())?;
    let env = [CString::new(format!("{SWITCHED_ENV}=1")).map_err(|e| e.to_string())?];
    let e = nix::unistd::execve(&path, std::slice::from_ref(&path), &env);
    Err(format!("exec /init: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Recording;

    #[test]
    fn tmpfs_is_filled_before_it_moves_over_root() {
        let rec = Recording::default();
        prepare(&rec, b"ELF").expect("prepare");
        let c = rec.calls();
        assert_eq!(c[0], "mkdir /newroot");
        assert!(c[1].starts_with("mount tmpfs /newroot tmpfs"));
        assert_eq!(c[2], "write /newroot/init ELF");
        assert_eq!(c[3], "chdir /newroot");
        assert!(c[4].starts_with("mount . / "), "{}", c[4]);
    }
}
