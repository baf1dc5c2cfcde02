//! virtio-balloon (device id 5): memory the guest is not using goes back to the host.
//!
//! Two ways in: free page reporting (the guest's buddy allocator reports free blocks
//! of 2 MiB and more on the reporting queue, a couple of seconds after they are
//! freed) and the balloon proper (the host sets a target in pages; the guest inflates
//! by handing over that many pages, or deflates to take them back). Reported and
//! inflated ranges are discarded from the host's mapping of guest memory
//! ([`discard`]); the guest gets zero pages (or, in a template clone, the template's
//! page) when it touches them again, which is what a free page may hold.
//!
//! We offer DEFLATE_ON_OOM (the guest may take pages back rather than OOM: a target
//! is a wish, the container's cgroup is the limit) and PAGE_REPORTING; not the stats
//! queue or free page hinting (the host reads what it needs from the agent).

mod device;
mod discard;
mod event_handler;
mod queues;

#[cfg(test)]
mod tests;

pub use device::{Balloon, BalloonControl};
pub use discard::{Discard, DiscardError, MemoryDiscard};
pub use queues::{process_deflate, process_inflate, process_reporting, BalloonCounters};

pub const BALLOON_DEVICE_ID: u32 = 5;
pub const QUEUE_SIZE: u16 = 128;
/// The balloon's page: PFNs on the inflate and deflate queues count 4 KiB pages
/// whatever the guest's page size.
pub const PAGE: u64 = 4096;

/// Queue indices, as the Linux driver lays them out when neither the stats queue nor
/// free page hinting is negotiated (virtio 1.2 §5.5.2).
pub mod queue {
    pub const INFLATE: usize = 0;
    pub const DEFLATE: usize = 1;
    pub const REPORTING: usize = 2;
}

/// How many queues a driver that accepted `acked` sets up: the reporting queue only
/// with PAGE_REPORTING.
pub fn queues_in_use(acked: u64) -> usize {
    if acked & feature::PAGE_REPORTING != 0 {
        3
    } else {
        2
    }
}

/// Feature bits (§5.5.3).
pub mod feature {
    pub const DEFLATE_ON_OOM: u64 = 1 << 2;
    pub const PAGE_REPORTING: u64 = 1 << 5;
}

/// Config space offsets (§5.5.4): the host's target and the guest's count, in pages.
pub mod config {
    pub const NUM_PAGES: u64 = 0;
    pub const ACTUAL: u64 = 4;
    pub const LEN: usize = 8;
}
