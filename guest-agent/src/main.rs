//! `/init` of the isola guest.

use std::io::Write;

use isola_guest_agent::{boot_timer, init, syscall::Linux};

/// The line the host waits for: userspace is up.
const READY_MARKER: &str = "isola-init: ready";

fn main() {
    if let Err(e) = init::mount_early(&Linux) {
        eprintln!("isola-init: {e}");
    }
    if let Err(e) = boot_timer::signal_boot_timer() {
        eprintln!("isola-init: boot timer: {e}");
    }
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let uptime = uptime.split(' ').next().unwrap_or("?");
    println!("{READY_MARKER} uptime={uptime}s");
    let _ = std::io::stdout().flush();
    power_off();
}

/// Ends the VM: a reset, which both isola-vmm (i8042) and QEMU (-no-reboot) turn into exit.
fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // reboot(2) returns only on failure; PID 1 must never exit.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
