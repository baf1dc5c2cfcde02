//! The boot-timer device: the guest writes [`BOOT_TIMER_MAGIC`] to its first byte
//! when it reaches a milestone (Firecracker's convention), and we record how long
//! after the VMM process started that was.

use std::sync::mpsc::Sender;
use std::time::Instant;

use super::{BusDevice, VmEvent};

pub const BOOT_TIMER_MAGIC: u8 = 123;
/// Milestones recorded per VM; later writes are ignored, so a guest writing in a loop
/// grows neither our memory nor our log.
pub const MAX_BOOT_EVENTS: usize = 8;

pub struct BootTimer {
    start: Instant,
    events: Sender<VmEvent>,
    fired: usize,
}

impl BootTimer {
    pub fn new(start: Instant, events: Sender<VmEvent>) -> Self {
        Self { start, events, fired: 0 }
    }

    /// Milestones recorded so far (a snapshot keeps the count).
    pub fn fired(&self) -> usize {
        self.fired
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.first() == Some(&BOOT_TIMER_MAGIC) && self.fired < MAX_BOOT_EVENTS {
            self.fired += 1;
            // The receiver is gone only while the VMM shuts down; nothing to report then.
            let _ = self.events.send(VmEvent::BootTimer(self.start.elapsed()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn magic_write_records_time_since_start() {
        let (tx, rx) = channel();
        let start = Instant::now() - Duration::from_millis(50);
        let mut t = BootTimer::new(start, tx);
        t.write(0, &[BOOT_TIMER_MAGIC, 0, 0, 0]);
        match rx.try_recv() {
            Ok(VmEvent::BootTimer(d)) => assert!(d >= Duration::from_millis(50), "{d:?}"),
            other => panic!("expected a boot-timer event, got {other:?}"),
        }
    }

    #[test]
    fn a_guest_writing_in_a_loop_records_only_the_first_milestones() {
        let (tx, rx) = channel();
        let mut t = BootTimer::new(Instant::now(), tx);
        for _ in 0..1_000_000 {
            t.write(0, &[BOOT_TIMER_MAGIC]);
        }
        assert_eq!(rx.try_iter().count(), MAX_BOOT_EVENTS);
    }

    #[test]
    fn other_values_and_offsets_are_ignored() {
        let (tx, rx) = channel();
        let mut t = BootTimer::new(Instant::now(), tx);
        t.write(0, &[122]);
        t.write(4, &[BOOT_TIMER_MAGIC]);
        t.write(0, &[]);
        assert!(rx.try_recv().is_err());
        let mut buf = [9u8; 4];
        t.read(0, &mut buf);
        assert_eq!(buf, [0; 4]);
    }
}
