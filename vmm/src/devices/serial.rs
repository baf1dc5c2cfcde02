//! The 8250 console on COM1 (vm-superio), writing to stdout, a file, or nowhere.

use std::io::Write;

use serde::{Deserialize, Serialize};
use vm_superio::serial::{NoEvents, SerialState};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::BusDevice;

pub const SERIAL_PORT_BASE: u64 = 0x3f8;
pub const SERIAL_IRQ: u32 = 4;

/// Raises the serial interrupt through an irqfd.
pub struct EventFdTrigger(pub EventFd);

/// A saved UART the emulator refuses (a FIFO fuller than the UART's, say).
#[derive(Debug, thiserror::Error)]
#[error("serial state: {0}")]
pub struct SerialRestoreError(#[source] pub vm_superio::serial::Error<std::io::Error>);

impl Trigger for EventFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// COM1 as a bus device.
pub struct SerialConsole {
    uart: Serial<EventFdTrigger, NoEvents, Box<dyn Write + Send>>,
    /// Writes to the console that failed (a full log, a closed reader): the guest
    /// repeats them at will, so only some are logged.
    failed_writes: u64,
}

/// The UART's registers and receive FIFO, as a snapshot keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialSnapshot {
    pub regs: [u8; 9],
    pub in_buffer: Vec<u8>,
}

impl SerialConsole {
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> Self {
        Self { uart: Serial::new(EventFdTrigger(irq), out), failed_writes: 0 }
    }

    /// A UART in the state `saved` left, writing to `out`; a FIFO longer than the
    /// UART's is refused.
    pub fn restore(
        irq: EventFd,
        out: Box<dyn Write + Send>,
        saved: &SerialSnapshot,
    ) -> Result<Self, SerialRestoreError> {
        let [baud_divisor_low, baud_divisor_high, interrupt_enable, interrupt_identification, line_control, line_status, modem_control, modem_status, scratch] =
            saved.regs;
        let state = SerialState {
            baud_divisor_low,
            baud_divisor_high,
            interrupt_enable,
            interrupt_identification,
            line_control,
            line_status,
            modem_control,
            modem_status,
            scratch,
            in_buffer: saved.in_buffer.clone(),
        };
        Serial::from_state(&state, EventFdTrigger(irq), NoEvents, out)
            .map(|uart| Self { uart, failed_writes: 0 })
            .map_err(SerialRestoreError)
    }

    pub fn snapshot(&self) -> SerialSnapshot {
        let s = self.uart.state();
        SerialSnapshot {
            regs: [
                s.baud_divisor_low,
                s.baud_divisor_high,
                s.interrupt_enable,
                s.interrupt_identification,
                s.line_control,
                s.line_status,
                s.modem_control,
                s.modem_status,
                s.scratch,
            ],
            in_buffer: s.in_buffer,
        }
    }
}

impl BusDevice for SerialConsole {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.uart.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(b), Ok(off)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.uart.write(off, *b) {
                self.failed_writes += 1;
                if crate::virtio::worth_logging(self.failed_writes) {
                    log::warn!("serial write failed: {e:?} ({} so far)", self.failed_writes);
                }
            }
            if off == 0 {
                // Console lines must reach the reader promptly (tests wait on them).
                let _ = self.uart.writer_mut().flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_written_to_thr_reach_the_output() {
        let sink = Sink::default();
        let mut s = SerialConsole::new(EventFd::new(0).expect("eventfd"), Box::new(sink.clone()));
        for b in b"ok\n" {
            s.write(0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().expect("lock"), b"ok\n");
    }

    #[test]
    fn line_status_reports_transmitter_empty() {
        let mut s = SerialConsole::new(EventFd::new(0).expect("eventfd"), Box::new(std::io::sink()));
        let mut lsr = [0u8];
        s.read(5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60, "THR empty and transmitter idle");
    }

    #[test]
    fn a_restored_uart_keeps_its_registers_and_a_bad_fifo_is_refused() {
        let mut s = SerialConsole::new(EventFd::new(0).expect("eventfd"), Box::new(std::io::sink()));
        s.write(7, &[0x5a]); // scratch
        s.write(3, &[0x03]); // 8N1
        let snap = s.snapshot();
        let mut r = SerialConsole::restore(EventFd::new(0).expect("eventfd"), Box::new(std::io::sink()), &snap)
            .expect("restore");
        let mut b = [0u8];
        r.read(7, &mut b);
        assert_eq!(b[0], 0x5a);
        assert_eq!(r.snapshot(), snap);
        let bad = SerialSnapshot { in_buffer: vec![0; 1 << 20], ..snap };
        assert!(SerialConsole::restore(EventFd::new(0).expect("eventfd"), Box::new(std::io::sink()), &bad).is_err());
    }

    #[test]
    fn out_of_range_offsets_and_empty_accesses_do_not_panic() {
        let mut s = SerialConsole::new(EventFd::new(0).expect("eventfd"), Box::new(std::io::sink()));
        s.write(300, &[1]);
        s.write(0, &[]);
        let mut empty: [u8; 0] = [];
        s.read(0, &mut empty);
    }
}
