//! Stable per-sandbox names and numbers derived from a sandbox's name.

/// A stable 32-bit hash of a sandbox name (FNV-1a), for per-sandbox names and numbers.
pub fn name_hash(id: &str) -> u32 {
    id.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// A guest CID per sandbox (3 and up; 0-2 are reserved), stable for its name.
pub fn guest_cid(id: &str) -> u32 {
    3 + name_hash(id) % 1_000_000
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
}
