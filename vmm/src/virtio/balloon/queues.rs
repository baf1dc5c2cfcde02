//! The balloon's three queues as plain functions that say whether the guest needs an
//! interrupt. Every chain is used (a guest waits for its report or inflate to come
//! back); ranges that are not guest RAM are refused and counted, never followed.

use std::io::Read;

use virtio_queue::{Queue, QueueT, Reader};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::{Discard, PAGE};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BalloonCounters {
    pub inflated_pages: u64,
    pub deflated_pages: u64,
    /// Bytes of free memory the guest reported and we dropped.
    pub reported_bytes: u64,
    /// Ranges or chains refused: not RAM, not page aligned, unreadable.
    pub refused: u64,
}

/// PFNs read per step: a chain of any length is read through this much stack.
const PFN_BATCH: usize = 256;

/// Inflate: the guest hands over pages (u32 4 KiB page numbers); we drop them.
pub fn process_inflate(queue: &mut Queue, mem: &GuestMemoryMmap, d: &mut dyn Discard, c: &mut BalloonCounters) -> bool {
    process_pfns(queue, mem, c, |pfns, c| {
        c.inflated_pages += pfns.len() as u64;
        for (start, pages) in runs(pfns) {
            refuse_on_error(d.discard(mem, GuestAddress(start * PAGE), pages * PAGE), c);
        }
    })
}

/// Deflate: the guest takes pages back. Nothing to do (we do not offer
/// MUST_TELL_HOST: a dropped page comes back on its first touch).
pub fn process_deflate(queue: &mut Queue, mem: &GuestMemoryMmap, c: &mut BalloonCounters) -> bool {
    process_pfns(queue, mem, c, |pfns, c| c.deflated_pages += pfns.len() as u64)
}

/// Free page reporting: each chain lists free blocks as device-writable buffers (the
/// guest's scatterlist); we drop each and give the chain back.
pub fn process_reporting(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    d: &mut dyn Discard,
    c: &mut BalloonCounters,
) -> bool {
    let mut used = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        for desc in chain {
            if !desc.is_write_only() {
                c.refused += 1;
                continue;
            }
            let len = u64::from(desc.len());
            match d.discard(mem, desc.addr(), len) {
                Ok(()) => c.reported_bytes += len,
                Err(e) => refuse(e, c),
            }
        }
        if queue.add_used(mem, head, 0).is_err() {
            break;
        }
        used = true;
    }
    used
}

fn process_pfns(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    c: &mut BalloonCounters,
    mut each: impl FnMut(&[u64], &mut BalloonCounters),
) -> bool {
    let mut used = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        match Reader::new(mem, chain) {
            Ok(mut reader) => {
                let mut bytes = [0u8; PFN_BATCH * 4];
                let mut pfns = [0u64; PFN_BATCH];
                loop {
                    let n = reader.available_bytes().min(bytes.len()) / 4 * 4;
                    if n == 0 || reader.read_exact(&mut bytes[..n]).is_err() {
                        break;
                    }
                    for (i, b) in bytes[..n].chunks_exact(4).enumerate() {
                        pfns[i] = u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    }
                    each(&pfns[..n / 4], c);
                }
            }
            Err(_) => c.refused += 1,
        }
        if queue.add_used(mem, head, 0).is_err() {
            break;
        }
        used = true;
    }
    used
}

/// Consecutive page numbers as (first, count) runs, so a 2 MiB inflate is one
/// madvise and not 512.
fn runs(pfns: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in pfns {
        match out.last_mut() {
            Some((start, n)) if *start + *n == p => *n += 1,
            _ => out.push((p, 1)),
        }
    }
    out
}

fn refuse_on_error(r: Result<(), super::DiscardError>, c: &mut BalloonCounters) {
    if let Err(e) = r {
        refuse(e, c);
    }
}

fn refuse(e: super::DiscardError, c: &mut BalloonCounters) {
    c.refused += 1;
    if crate::virtio::worth_logging(c.refused) {
        log::warn!("balloon: {e} ({} refused so far)", c.refused);
    }
}

#[cfg(test)]
pub(super) fn runs_for_test(pfns: &[u64]) -> Vec<(u64, u64)> {
    runs(pfns)
}
