//! The transport's interrupt: a status word the driver reads and acks, and an irqfd.

use std::sync::atomic::{AtomicU32, Ordering};

use vmm_sys_util::eventfd::EventFd;

/// InterruptStatus bit: a used ring was updated.
pub const INT_VRING: u32 = 1;
/// InterruptStatus bit: the configuration changed.
pub const INT_CONFIG: u32 = 2;

pub struct Interrupt {
    status: AtomicU32,
    irqfd: EventFd,
}

impl Interrupt {
    pub fn new(irqfd: EventFd) -> Self {
        Self { status: AtomicU32::new(0), irqfd }
    }

    pub fn irqfd(&self) -> &EventFd {
        &self.irqfd
    }

    pub fn status(&self) -> u32 {
        self.status.load(Ordering::Acquire)
    }

    /// Puts back InterruptStatus as a snapshot saved it (the line is raised when a
    /// bit is set, as it was then).
    pub fn restore(&self, bits: u32) -> std::io::Result<()> {
        self.status.store(bits, Ordering::Release);
        if bits != 0 {
            self.irqfd.write(1)?;
        }
        Ok(())
    }

    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::AcqRel);
    }

    /// Sets `bits` in InterruptStatus and raises the line.
    pub fn trigger(&self, bits: u32) -> std::io::Result<()> {
        self.status.fetch_or(bits, Ordering::AcqRel);
        self.irqfd.write(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_sets_status_and_raises_the_irqfd_until_acked() {
        let i = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"));
        i.trigger(INT_VRING).expect("trigger");
        i.trigger(INT_CONFIG).expect("trigger");
        assert_eq!(i.status(), INT_VRING | INT_CONFIG);
        assert_eq!(i.irqfd().read().expect("raised"), 2);
        i.ack(INT_VRING);
        assert_eq!(i.status(), INT_CONFIG);
    }
}
