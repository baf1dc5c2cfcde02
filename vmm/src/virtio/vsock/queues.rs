//! Moving packets between the virtqueues and a backend. Plain functions that return
//! whether the guest needs an interrupt, so they are tested on mock guest memory.

use std::io::{Read, Write};

use virtio_queue::{Queue, QueueOwnedT, QueueT, Reader, Writer};
use vm_memory::GuestMemoryMmap;

use super::packet::HDR_LEN;
use super::{Header, Packet, VsockBackend, VsockError, MAX_PAYLOAD};

/// What the device saw that a driver should never send.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub tx_packets: u64,
    pub rx_packets: u64,
    pub malformed: u64,
}

fn read_packet(
    mem: &GuestMemoryMmap,
    chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
) -> Result<Packet, VsockError> {
    let mut r = Reader::new(mem, chain).map_err(VsockError::Chain)?;
    let avail = r.available_bytes();
    if avail < HDR_LEN {
        return Err(VsockError::ShortHeader(avail));
    }
    let mut hb = [0u8; HDR_LEN];
    r.read_exact(&mut hb).map_err(VsockError::Read)?;
    let hdr = Header::parse(&hb);
    let len = hdr.len as usize;
    if len > MAX_PAYLOAD {
        return Err(VsockError::TooLarge(len));
    }
    // Header and payload may share one descriptor (Linux >= 6.2) or not; the reader
    // walks the readable descriptors either way.
    if r.available_bytes() < len {
        return Err(VsockError::Truncated { claimed: len, present: r.available_bytes() });
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).map_err(VsockError::Read)?;
    Ok(Packet { hdr, data })
}

/// Drains the TX queue into `backend`. Malformed chains are logged, counted and
/// returned to the guest unprocessed.
pub fn process_tx(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    guest_cid: u64,
    backend: &mut dyn VsockBackend,
    counters: &mut Counters,
) -> bool {
    let mut used = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let pkt = read_packet(mem, chain).and_then(|p| {
            if p.hdr.src_cid == guest_cid {
                Ok(p)
            } else {
                Err(VsockError::WrongSourceCid { got: p.hdr.src_cid, expected: guest_cid })
            }
        });
        match pkt {
            Ok(p) => {
                counters.tx_packets += 1;
                backend.send_pkt(p);
            }
            Err(e) => {
                counters.malformed += 1;
                if crate::virtio::worth_logging(counters.malformed) {
                    log::warn!("vsock: dropped tx chain {head}: {e} ({} so far)", counters.malformed);
                }
            }
        }
        if let Err(e) = queue.add_used(mem, head, 0) {
            log::warn!("vsock: tx add_used: {e}");
            break;
        }
        used = true;
    }
    used
}

fn write_packet(w: &mut Writer<'_>, pkt: &Packet) -> Result<u32, VsockError> {
    let mut hdr = pkt.hdr;
    hdr.len = pkt.data.len() as u32;
    w.write_all(&hdr.to_bytes()).map_err(VsockError::GuestWrite)?;
    w.write_all(&pkt.data).map_err(VsockError::GuestWrite)?;
    Ok((HDR_LEN + pkt.data.len()) as u32)
}

/// Fills RX buffers with packets from `backend` while both last.
pub fn process_rx(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    backend: &mut dyn VsockBackend,
    counters: &mut Counters,
) -> bool {
    let mut used = false;
    while backend.has_pending_rx() {
        let Some(chain) = queue.pop_descriptor_chain(mem) else {
            break;
        };
        let head = chain.head_index();
        let written = match Writer::new(mem, chain) {
            Err(e) => Err(VsockError::Chain(e)),
            Ok(w) if w.available_bytes() < HDR_LEN => Err(VsockError::SmallRxBuffer(w.available_bytes())),
            Ok(mut w) => {
                let room = (w.available_bytes() - HDR_LEN).min(MAX_PAYLOAD);
                match backend.recv_pkt(room) {
                    Some(pkt) => write_packet(&mut w, &pkt),
                    None => {
                        // Nothing after all: give the buffer back for next time.
                        queue.go_to_previous_position();
                        break;
                    }
                }
            }
        };
        let len = match written {
            Ok(n) => {
                counters.rx_packets += 1;
                n
            }
            Err(e) => {
                counters.malformed += 1;
                if crate::virtio::worth_logging(counters.malformed) {
                    log::warn!("vsock: rx chain {head} unusable: {e} ({} so far)", counters.malformed);
                }
                0
            }
        };
        if let Err(e) = queue.add_used(mem, head, len) {
            log::warn!("vsock: rx add_used: {e}");
            break;
        }
        used = true;
    }
    used
}

/// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: the guest drops its connections and reads its
/// CID again (sent to a VM restored from a snapshot).
pub const EVENT_TRANSPORT_RESET: u32 = 0;

/// Puts one event (`struct virtio_vsock_event`: a le32 id) into the event queue.
/// Returns Some(needs interrupt) when it was delivered, None while the guest has
/// posted no buffer for it (the caller keeps it pending).
pub fn push_event(queue: &mut Queue, mem: &GuestMemoryMmap, id: u32) -> Option<bool> {
    let chain = queue.pop_descriptor_chain(mem)?;
    let head = chain.head_index();
    let len = match Writer::new(mem, chain) {
        Ok(mut w) if w.available_bytes() >= 4 => w.write_all(&id.to_le_bytes()).map(|()| 4).unwrap_or(0),
        _ => {
            log::warn!("vsock: event buffer {head} too small or unusable");
            0
        }
    };
    if let Err(e) = queue.add_used(mem, head, len) {
        log::warn!("vsock: event queue: {e:?}");
        return Some(false);
    }
    Some(true)
}
