//! Just enough of the i8042 keyboard controller for the guest to reset the machine:
//! the CPU-reset pulse (0xfe to the command port) becomes a clean VMM exit.

use std::sync::mpsc::Sender;

use super::{BusDevice, VmEvent};

/// Data port 0x60 .. command/status port 0x64.
pub const I8042_PORT_BASE: u64 = 0x60;
const COMMAND_OFFSET: u64 = 4;
const CMD_RESET_CPU: u8 = 0xfe;

pub struct I8042 {
    events: Sender<VmEvent>,
}

impl I8042 {
    pub fn new(events: Sender<VmEvent>) -> Self {
        Self { events }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty, so guests never wait on us.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data.first() == Some(&CMD_RESET_CPU) {
            let _ = self.events.send(VmEvent::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn reset_pulse_requests_shutdown() {
        let (tx, rx) = channel();
        let mut k = I8042::new(tx);
        k.write(0, &[CMD_RESET_CPU]);
        assert!(rx.try_recv().is_err(), "data port write is not a reset");
        k.write(COMMAND_OFFSET, &[0xd1]);
        assert!(rx.try_recv().is_err());
        k.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(rx.try_recv().ok(), Some(VmEvent::Reset));
    }
}
