//! Legacy and platform devices on the port-I/O and MMIO buses.

mod boot_timer;
mod bus;
mod i8042;
mod serial;

pub use boot_timer::{BootTimer, BOOT_TIMER_MAGIC};
pub use bus::{Bus, BusDevice, BusError};
pub use i8042::{I8042, I8042_PORT_BASE};
pub use serial::{EventFdTrigger, SerialConsole, SerialRestoreError, SerialSnapshot, SERIAL_IRQ, SERIAL_PORT_BASE};

/// Something a device tells the VMM's main loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// The guest asked for a reset (i8042 pulse): a clean shutdown.
    Reset,
    /// The guest wrote the boot-timer magic; time since the VMM process started.
    BootTimer(std::time::Duration),
    /// The control API asked the VM to stop.
    Stop,
}
