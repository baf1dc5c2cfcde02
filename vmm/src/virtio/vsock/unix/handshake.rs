//! The hybrid-vsock handshake of a host client: `CONNECT <port>\n`, answered with
//! `OK <host port>\n` once the guest accepted.

/// Longest `CONNECT <port>\n` line we wait for.
pub const MAX_CONNECT_LINE: usize = 32;

/// What the bytes a client sent so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Peeked {
    /// No newline yet; wait for more.
    Incomplete,
    /// A line of `len` bytes (newline included) asking for guest `port`, or a bad line.
    Line { len: usize, port: Option<u32> },
    /// More than [`MAX_CONNECT_LINE`] bytes without a newline.
    TooLong,
}

/// Looks at the start of a client's stream (peeked, not consumed).
pub fn peek(buf: &[u8]) -> Peeked {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_CONNECT_LINE { Peeked::TooLong } else { Peeked::Incomplete };
    };
    let port = std::str::from_utf8(&buf[..nl])
        .ok()
        .and_then(|l| l.trim_end_matches('\r').strip_prefix("CONNECT "))
        .and_then(|s| s.trim().parse::<u32>().ok());
    Peeked::Line { len: nl + 1, port }
}

/// The reply that tells a host client its stream is open.
pub fn ok_line(host_port: u32) -> Vec<u8> {
    format!("OK {host_port}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_junk_is_named() {
        assert_eq!(peek(b"CONNECT 1024\nrest"), Peeked::Line { len: 13, port: Some(1024) });
        assert_eq!(peek(b"CONNECT 52\r\n"), Peeked::Line { len: 12, port: Some(52) });
        assert_eq!(peek(b"CONNECT x\n"), Peeked::Line { len: 10, port: None });
        assert_eq!(peek(b"HELLO\n"), Peeked::Line { len: 6, port: None });
        assert_eq!(peek(b"CONNECT 10"), Peeked::Incomplete);
        assert_eq!(peek(&[b'A'; MAX_CONNECT_LINE]), Peeked::TooLong);
        assert_eq!(ok_line(7), b"OK 7\n");
    }
}
