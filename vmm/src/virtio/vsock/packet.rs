//! The 44-byte virtio-vsock header and owned packets.

use super::{op, HOST_CID, TYPE_STREAM};

pub const HDR_LEN: usize = 44;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

fn u32_at(b: &[u8; HDR_LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8; HDR_LEN], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

impl Header {
    pub fn parse(b: &[u8; HDR_LEN]) -> Self {
        Self {
            src_cid: u64_at(b, 0),
            dst_cid: u64_at(b, 8),
            src_port: u32_at(b, 16),
            dst_port: u32_at(b, 20),
            len: u32_at(b, 24),
            type_: u16::from_le_bytes([b[28], b[29]]),
            op: u16::from_le_bytes([b[30], b[31]]),
            flags: u32_at(b, 32),
            buf_alloc: u32_at(b, 36),
            fwd_cnt: u32_at(b, 40),
        }
    }

    pub fn to_bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// A packet with its payload copied out of (or into) guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub hdr: Header,
    pub data: Vec<u8>,
}

impl Packet {
    /// A host→guest packet on connection (host `local_port`, guest `peer_port`).
    pub fn to_guest(guest_cid: u64, local_port: u32, peer_port: u32, op: u16) -> Self {
        Self {
            hdr: Header {
                src_cid: HOST_CID,
                dst_cid: guest_cid,
                src_port: local_port,
                dst_port: peer_port,
                type_: TYPE_STREAM,
                op,
                ..Header::default()
            },
            data: Vec::new(),
        }
    }

    /// The RST answering `self` (ports swapped), for packets we cannot accept.
    pub fn rst_reply(&self) -> Option<Self> {
        (self.hdr.op != op::RST).then(|| Self {
            hdr: Header {
                src_cid: self.hdr.dst_cid,
                dst_cid: self.hdr.src_cid,
                src_port: self.hdr.dst_port,
                dst_port: self.hdr.src_port,
                type_: TYPE_STREAM,
                op: op::RST,
                ..Header::default()
            },
            data: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_its_wire_layout() {
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 0x1234,
            dst_port: 1024,
            len: 5,
            type_: 1,
            op: op::RW,
            flags: 2,
            buf_alloc: 65536,
            fwd_cnt: 77,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..8], &3u64.to_le_bytes());
        assert_eq!(&b[30..32], &op::RW.to_le_bytes());
        assert_eq!(Header::parse(&b), h);
    }

    #[test]
    fn rst_reply_swaps_ends_and_never_answers_an_rst() {
        let mut p = Packet::to_guest(3, 1000, 2000, op::RW);
        let r = p.rst_reply().expect("rst");
        assert_eq!((r.hdr.src_cid, r.hdr.dst_cid, r.hdr.src_port, r.hdr.dst_port), (3, 2, 2000, 1000));
        assert_eq!(r.hdr.op, op::RST);
        p.hdr.op = op::RST;
        assert!(p.rst_reply().is_none());
    }
}
