//! Is B different from A? Two samples of timings, compared by a Mann-Whitney U test
//! (no assumption about the shape of boot-time distributions, which have long tails)
//! and a bootstrap confidence interval for the difference of their medians.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use statrs::distribution::{ContinuousCDF, Normal};

/// Fewer runs than this on either side: no verdict.
pub const MIN_RUNS: usize = 5;

/// The level a verdict is stated at.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Level {
    /// Family-wise false-positive rate; split over the phases compared (Bonferroni).
    pub alpha: f64,
    /// Smallest change of the median that counts, as a fraction (0.03 = 3 %).
    pub min_effect: f64,
}

impl Default for Level {
    fn default() -> Self {
        Level { alpha: 0.01, min_effect: 0.03 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Faster,
    Slower,
    NoSignificantDifference,
    NotEnoughRuns,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "SLOWER",
            Verdict::NoSignificantDifference => "no significant difference",
            Verdict::NotEnoughRuns => "not enough runs",
        })
    }
}

/// What the test says about one phase.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// Two-sided p-value of the Mann-Whitney U test.
    pub p_value: f64,
    /// 95 % bootstrap interval of median(B) − median(A), in the samples' unit.
    pub diff_ci: (f64, f64),
    /// median(B) / median(A).
    pub ratio: f64,
    pub verdict: Verdict,
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn sorted(v: &[u64]) -> Vec<f64> {
    let mut s: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// Two-sided p-value of the Mann-Whitney U test, by the normal approximation with tie
/// and continuity corrections (fine from about 5 samples a side).
pub fn mann_whitney_p(a: &[u64], b: &[u64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let mut all: Vec<(u64, bool)> = a.iter().map(|&x| (x, true)).chain(b.iter().map(|&x| (x, false))).collect();
    all.sort_by_key(|p| p.0);
    // Mid-ranks for ties, and the tie term of the variance.
    let (mut rank_a, mut ties, mut i) = (0.0, 0.0, 0);
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let mid = (i + j + 1) as f64 / 2.0;
        let t = (j - i) as f64;
        ties += t * t * t - t;
        rank_a += mid * all[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    let u = rank_a - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 0.0 {
        return 1.0; // every value equal
    }
    let z = ((u - n1 * n2 / 2.0).abs() - 0.5).max(0.0) / var.sqrt();
    match Normal::new(0.0, 1.0) {
        Ok(norm) => (2.0 * (1.0 - norm.cdf(z))).min(1.0),
        Err(_) => 1.0,
    }
}

/// 95 % percentile-bootstrap interval of median(B) − median(A); seeded, so a report
/// is reproducible from its samples.
pub fn median_diff_ci(a: &[u64], b: &[u64], resamples: usize, seed: u64) -> (f64, f64) {
    let (a, b) = (sorted(a), sorted(b));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut buf_a = vec![0.0; a.len()];
    let mut buf_b = vec![0.0; b.len()];
    let mut diffs: Vec<f64> = (0..resamples)
        .map(|_| {
            for x in buf_a.iter_mut() {
                *x = a[rng.gen_range(0..a.len())];
            }
            for x in buf_b.iter_mut() {
                *x = b[rng.gen_range(0..b.len())];
            }
            buf_a.sort_by(f64::total_cmp);
            buf_b.sort_by(f64::total_cmp);
            median(&buf_b) - median(&buf_a)
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    let at = |q: f64| diffs[((q * (diffs.len() - 1) as f64).round() as usize).min(diffs.len() - 1)];
    (at(0.025), at(0.975))
}

/// B against A for one phase, as one of `family` comparisons made together.
pub fn compare(a: &[u64], b: &[u64], level: Level, family: usize) -> Outcome {
    if a.len() < MIN_RUNS || b.len() < MIN_RUNS {
        return Outcome { p_value: 1.0, diff_ci: (0.0, 0.0), ratio: f64::NAN, verdict: Verdict::NotEnoughRuns };
    }
    let (ma, mb) = (median(&sorted(a)), median(&sorted(b)));
    let ratio = if ma > 0.0 { mb / ma } else { f64::NAN };
    let p_value = mann_whitney_p(a, b);
    let diff_ci = median_diff_ci(a, b, 2000, 0x1501a);
    let significant = p_value < level.alpha / family.max(1) as f64
        && (diff_ci.0 > 0.0 || diff_ci.1 < 0.0)
        && (ratio - 1.0).abs() >= level.min_effect;
    let verdict = match (significant, ratio > 1.0) {
        (false, _) => Verdict::NoSignificantDifference,
        (true, true) => Verdict::Slower,
        (true, false) => Verdict::Faster,
    };
    Outcome { p_value, diff_ci, ratio, verdict }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed pseudo-random sample around `center` µs with ±`spread` jitter.
    fn sample(n: usize, center: u64, spread: u64, seed: u64) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| center - spread + rng.gen_range(0..=2 * spread)).collect()
    }

    #[test]
    fn identical_distributions_show_no_difference() {
        for seed in 0..20 {
            let a = sample(20, 10_000, 1_500, seed);
            let b = sample(20, 10_000, 1_500, seed + 100);
            let o = compare(&a, &b, Level::default(), 5);
            assert_eq!(o.verdict, Verdict::NoSignificantDifference, "seed {seed}: {o:?}");
        }
        let same = sample(20, 10_000, 1_500, 7);
        assert_eq!(compare(&same, &same, Level::default(), 1).verdict, Verdict::NoSignificantDifference);
    }

    #[test]
    fn a_shift_is_detected_in_the_right_direction() {
        let a = sample(15, 10_000, 1_000, 1);
        let b = sample(15, 12_000, 1_000, 2);
        let o = compare(&a, &b, Level::default(), 5);
        assert_eq!(o.verdict, Verdict::Slower, "{o:?}");
        assert!(o.diff_ci.0 > 0.0 && o.ratio > 1.1, "{o:?}");
        assert_eq!(compare(&b, &a, Level::default(), 5).verdict, Verdict::Faster);
    }

    #[test]
    fn a_tiny_but_real_shift_below_the_minimum_effect_is_not_reported() {
        let a: Vec<u64> = (0..30).map(|i| 10_000 + i).collect();
        let b: Vec<u64> = (0..30).map(|i| 10_100 + i).collect();
        assert!(mann_whitney_p(&a, &b) < 1e-6, "clearly shifted");
        assert_eq!(compare(&a, &b, Level::default(), 1).verdict, Verdict::NoSignificantDifference, "1 % < 3 %");
    }

    #[test]
    fn tiny_samples_get_no_verdict() {
        assert_eq!(compare(&[1, 2, 3], &[10, 20, 30, 40, 50], Level::default(), 1).verdict, Verdict::NotEnoughRuns);
    }

    #[test]
    fn the_u_test_matches_known_values() {
        // Complete separation of 10 and 10: exact two-sided p = 2/C(20,10) ≈ 1.1e-5; the
        // normal approximation gives about 1.8e-4.
        let a: Vec<u64> = (1..=10).collect();
        let b: Vec<u64> = (11..=20).collect();
        let p = mann_whitney_p(&a, &b);
        assert!((1e-4..3e-4).contains(&p), "{p}");
        // Interleaved samples: no evidence at all.
        let a: Vec<u64> = (0..10).map(|i| 2 * i).collect();
        let b: Vec<u64> = (0..10).map(|i| 2 * i + 1).collect();
        assert!(mann_whitney_p(&a, &b) > 0.5);
        assert_eq!(mann_whitney_p(&[5; 8], &[5; 8]), 1.0);
    }
}
