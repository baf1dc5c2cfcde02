//! Order statistics of a sample of microsecond timings.

/// min / p50 / p95 / max of `n` samples, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub n: usize,
    pub min: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=100).
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

impl Summary {
    pub fn of(samples: &[u64]) -> Option<Self> {
        let mut s = samples.to_vec();
        s.sort_unstable();
        Some(Summary {
            n: s.len(),
            min: *s.first()?,
            p50: percentile(&s, 50)?,
            p95: percentile(&s, 95)?,
            p99: percentile(&s, 99)?,
            max: *s.last()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&s, 50), Some(10));
        assert_eq!(percentile(&s, 95), Some(19));
        assert_eq!(percentile(&s, 100), Some(20));
        assert_eq!(percentile(&s, 0), Some(1));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn summary_sorts_its_input() {
        let sum = Summary::of(&[30, 10, 20, 40]).expect("non-empty");
        assert_eq!(sum, Summary { n: 4, min: 10, p50: 20, p95: 40, p99: 40, max: 40 });
        assert!(Summary::of(&[]).is_none());
    }
}
