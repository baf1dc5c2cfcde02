//! Seeded randomness for the chaos tests: `ISOLA_CHAOS_SEED=N` replays a run,
//! `ISOLA_CHAOS_ROUNDS` sizes it.

/// xorshift64*: small, seedable, enough to pick victims and moments.
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> (Self, u64) {
        let seed = std::env::var("ISOLA_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        });
        (Rng(seed.max(1)), seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub fn rounds(default: usize) -> usize {
    std::env::var("ISOLA_CHAOS_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}
