//! Address-range dispatch of port-I/O and MMIO accesses to devices.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device reachable through a [`Bus`]; offsets are relative to its base.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Errors inserting a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("device range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
    #[error("device range at {0:#x} is empty")]
    Empty(u64),
}

type Shared = Arc<Mutex<dyn BusDevice>>;

/// Devices keyed by base address.
#[derive(Default, Clone)]
pub struct Bus {
    devices: BTreeMap<u64, (u64, Shared)>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, base: u64, len: u64, dev: Shared) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty(base));
        }
        let end = base.checked_add(len).ok_or(BusError::Overlap { base, len })?;
        let clash = self.devices.range(..end).next_back().is_some_and(|(b, (l, _))| b + l > base);
        if clash {
            return Err(BusError::Overlap { base, len });
        }
        self.devices.insert(base, (len, dev));
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &Shared)> {
        let (base, (len, dev)) = self.devices.range(..=addr).next_back()?;
        (addr - base < *len).then_some((addr - base, dev))
    }

    /// Returns false when no device claims `addr` (the caller decides what that means).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((offset, dev)) => {
                // A device that panicked while holding its lock is still the best state we have.
                dev.lock().unwrap_or_else(|e| e.into_inner()).read(offset, data);
                true
            }
            None => false,
        }
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((offset, dev)) => {
                dev.lock().unwrap_or_else(|e| e.into_inner()).write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn accesses_reach_the_device_at_relative_offsets() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(0x3f8, 8, dev.clone()).expect("insert");
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b[0], 5);
        assert!(bus.write(0x3f8, b"x"));
        assert_eq!(dev.lock().expect("lock").writes, vec![(0, vec![b'x'])]);
        assert!(!bus.read(0x400, &mut b), "one past the end is unclaimed");
        assert!(!bus.write(0x3f7, &[0]));
    }

    #[test]
    fn overlapping_and_empty_ranges_are_refused() {
        let mut bus = Bus::new();
        bus.insert(0x1000, 0x1000, Arc::new(Mutex::new(Recorder::default()))).expect("insert");
        let dup = Arc::new(Mutex::new(Recorder::default()));
        assert_eq!(bus.insert(0x1fff, 2, dup.clone()), Err(BusError::Overlap { base: 0x1fff, len: 2 }));
        assert_eq!(bus.insert(0x800, 0x801, dup.clone()), Err(BusError::Overlap { base: 0x800, len: 0x801 }));
        assert_eq!(bus.insert(0x5000, 0, dup.clone()), Err(BusError::Empty(0x5000)));
        assert!(bus.insert(0x2000, 0x10, dup).is_ok(), "adjacent is fine");
    }
}
