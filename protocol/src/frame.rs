//! Length-prefixed JSON frames.

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::MAX_FRAME;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes one message as a frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

pub fn write_frame<T: Serialize, W: Write>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame. A clean EOF before the first byte is [`FrameError::Closed`].
pub fn read_frame<T: DeserializeOwned, R: Read>(r: &mut R) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Malformed("truncated length".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Malformed(format!("truncated body (wanted {len} bytes)")),
        _ => FrameError::Io(e),
    })?;
    decode(&body)
}

/// Decodes a frame body (without its length prefix).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Request, Response};
    use std::io::Cursor;

    #[test]
    fn round_trip_through_a_byte_stream() {
        let reqs = vec![
            Request::Ping,
            Request::Signal { id: "c1".into(), exec_id: Some("e".into()), signal: 15, all: false },
            Request::Wait { id: "c1".into(), exec_id: None },
        ];
        let mut buf = Vec::new();
        for r in &reqs {
            write_frame(&mut buf, r).expect("write");
        }
        let mut cur = Cursor::new(buf);
        for r in &reqs {
            assert_eq!(&read_frame::<Request, _>(&mut cur).expect("read"), r);
        }
        assert!(matches!(read_frame::<Request, _>(&mut cur), Err(FrameError::Closed)));
    }

    #[test]
    fn oversized_length_is_rejected_before_allocating() {
        let mut bytes = (u32::MAX).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        let e = read_frame::<Request, _>(&mut Cursor::new(bytes)).expect_err("too large");
        assert!(matches!(e, FrameError::TooLarge(n) if n == u32::MAX as usize));
    }

    #[test]
    fn truncated_and_garbage_frames_are_malformed_not_panics() {
        let e = read_frame::<Request, _>(&mut Cursor::new(vec![0, 0])).expect_err("short len");
        assert!(matches!(e, FrameError::Malformed(_)), "{e}");
        let e = read_frame::<Request, _>(&mut Cursor::new(vec![0, 0, 0, 9, b'{'])).expect_err("short body");
        assert!(e.to_string().contains("truncated body"), "{e}");
        let mut bad = 5u32.to_be_bytes().to_vec();
        bad.extend_from_slice(b"hello");
        assert!(matches!(read_frame::<Request, _>(&mut Cursor::new(bad)), Err(FrameError::Malformed(_))));
        let mut unknown = encode(&serde_json::json!({"op": "format_disk"})).expect("encode");
        assert!(matches!(read_frame::<Request, _>(&mut Cursor::new(&mut unknown)), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn responses_carry_error_codes() {
        let r = Response::Error(crate::AgentError::new(crate::ErrorCode::NotFound, "no container x"));
        let mut buf = Vec::new();
        write_frame(&mut buf, &r).expect("write");
        let text = String::from_utf8_lossy(&buf[4..]).to_string();
        assert!(text.contains("not_found"), "{text}");
        assert_eq!(read_frame::<Response, _>(&mut Cursor::new(buf)).expect("read"), r);
    }
}
