//! Stable per-sandbox names and numbers derived from a sandbox's name.

/// A stable 32-bit hash of a sandbox name (FNV-1a), for per-sandbox names and numbers.
pub fn name_hash(id: &str) -> u32 {
    id.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// A guest CID per sandbox (3 and up; 0-2 are reserved), stable for its name.
pub fn guest_cid(id: &str) -> u32 {
    3 + name_hash(id) % 1_000_000
}

/// A file's identity for cache keys: path, size and modification time (a rebuilt
/// kernel or binary gets a new one; `missing` when it is not there).
pub fn file_id(p: &std::path::Path) -> String {
    match std::fs::metadata(p) {
        Ok(m) => format!("{}:{}:{:?}", p.display(), m.len(), m.modified().ok()),
        Err(_) => format!("{}:missing", p.display()),
    }
}

/// The first `bytes` bytes of `text`'s SHA-256, as hex: cache keys.
pub fn short_hash(text: &str, bytes: usize) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes()).iter().take(bytes).map(|b| format!("{b:02x}")).collect()
}

/// `n` bytes from the kernel's RNG.
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))?;
    Ok(b)
}

/// `n` random bytes from the kernel's RNG as hex: unique names (sandboxes, pool
/// members, execs). Zeros if /dev/urandom cannot be read.
pub fn random_hex(n: usize) -> String {
    let b = random_bytes(n).unwrap_or_else(|_| vec![0; n]);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cids_are_stable_and_never_reserved() {
        assert_eq!(guest_cid("a"), guest_cid("a"));
        assert_ne!(name_hash("a"), name_hash("b"));
        assert!(["a", "b", "", "x".repeat(64).as_str()].iter().all(|n| guest_cid(n) >= 3));
    }

    #[test]
    fn random_hex_has_two_digits_a_byte_and_differs() {
        let (a, b) = (random_hex(6), random_hex(6));
        assert_eq!(a.len(), 12);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
