//! Requests between the virtqueue and a disk, as a plain function that says whether
//! the guest needs an interrupt. Every chain comes back with a status the guest can
//! read when it has room for one; nothing a guest sends makes the device panic.

use std::io::{Read, Write};

use virtio_queue::{DescriptorChain, Queue, QueueT, Reader, Writer};
use vm_memory::GuestMemoryMmap;

use super::{request, DiskBackend, ID_BYTES, MAX_REQUEST_BYTES, SECTOR};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockCounters {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    /// Requests answered IOERR or UNSUPP, and chains too broken to answer.
    pub failed: u64,
}

/// The 16-byte request header (§5.2.6).
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Header {
    kind: u32,
    _reserved: u32,
    sector: u64,
}

// SAFETY: plain integers, no padding, any bit pattern is valid.
unsafe impl vm_memory::ByteValued for Header {}

/// What one request needs beyond its chain.
pub struct Disk<'a> {
    pub backend: &'a mut dyn DiskBackend,
    pub read_only: bool,
    pub serial: &'a str,
    /// Reused across requests (grown up to [`MAX_REQUEST_BYTES`]).
    pub buf: &'a mut Vec<u8>,
}

/// Serves every request the guest queued.
pub fn process_queue(queue: &mut Queue, mem: &GuestMemoryMmap, disk: &mut Disk<'_>, c: &mut BlockCounters) -> bool {
    let mut used = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let len = match serve(mem, chain, disk, c) {
            Some((status, data_len)) => {
                if status != request::S_OK {
                    c.failed += 1;
                }
                data_len + 1
            }
            None => {
                c.failed += 1;
                if crate::virtio::worth_logging(c.failed) {
                    log::warn!("block: chain {head} has no room for a status ({} failed so far)", c.failed);
                }
                0
            }
        };
        if queue.add_used(mem, head, len).is_err() {
            break;
        }
        used = true;
    }
    used
}

/// Serves one chain; (status, bytes written before it), or None when the chain has no
/// writable status byte to answer in.
fn serve(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    disk: &mut Disk<'_>,
    c: &mut BlockCounters,
) -> Option<(u8, u32)> {
    let mut reader = Reader::new(mem, chain.clone()).ok()?;
    let mut writer = Writer::new(mem, chain).ok()?;
    let room = writer.available_bytes().checked_sub(1)?;
    // The status is the last writable byte; what comes before it is the data area.
    let mut status_w = writer.split_at(room).ok()?;
    let (status, wrote) = match reader.read_obj::<Header>() {
        Ok(h) => execute(h, &mut reader, &mut writer, room, disk, c),
        Err(_) => (request::S_IOERR, 0),
    };
    status_w.write_all(&[status]).ok()?;
    Some((status, wrote))
}

fn execute(
    h: Header,
    reader: &mut Reader<'_>,
    writer: &mut Writer<'_>,
    room: usize,
    disk: &mut Disk<'_>,
    c: &mut BlockCounters,
) -> (u8, u32) {
    match h.kind {
        request::IN => {
            let Some(offset) = in_bounds(h.sector, room, disk) else { return (request::S_IOERR, 0) };
            let buf = take_buf(disk.buf, room);
            if disk.backend.read_at(buf, offset).is_err() || writer.write_all(buf).is_err() {
                return (request::S_IOERR, 0);
            }
            c.reads += 1;
            (request::S_OK, room as u32)
        }
        request::OUT => {
            let len = reader.available_bytes();
            if disk.read_only {
                return (request::S_IOERR, 0);
            }
            let Some(offset) = in_bounds(h.sector, len, disk) else { return (request::S_IOERR, 0) };
            let buf = take_buf(disk.buf, len);
            if reader.read_exact(buf).is_err() || disk.backend.write_at(buf, offset).is_err() {
                return (request::S_IOERR, 0);
            }
            c.writes += 1;
            (request::S_OK, 0)
        }
        request::FLUSH => {
            if !disk.read_only && disk.backend.flush().is_err() {
                return (request::S_IOERR, 0);
            }
            c.flushes += 1;
            (request::S_OK, 0)
        }
        request::GET_ID => {
            let mut id = [0u8; ID_BYTES];
            let n = disk.serial.len().min(ID_BYTES);
            id[..n].copy_from_slice(&disk.serial.as_bytes()[..n]);
            let n = room.min(ID_BYTES);
            if writer.write_all(&id[..n]).is_err() {
                return (request::S_IOERR, 0);
            }
            (request::S_OK, n as u32)
        }
        _ => (request::S_UNSUPP, 0),
    }
}

/// The byte offset of `len` bytes at `sector`, when they are whole sectors, no longer
/// than a request may be, and inside the disk.
fn in_bounds(sector: u64, len: usize, disk: &Disk<'_>) -> Option<u64> {
    if len == 0 || len > MAX_REQUEST_BYTES || !(len as u64).is_multiple_of(SECTOR) {
        return None;
    }
    let offset = sector.checked_mul(SECTOR)?;
    (offset.checked_add(len as u64)? <= disk.backend.size()).then_some(offset)
}

fn take_buf(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    &mut buf[..len]
}
