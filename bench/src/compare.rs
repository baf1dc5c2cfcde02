//! `isola bench compare`: two bench results phase by phase, each with its verdict, and
//! only when the inputs that should be fixed are the same (or named as the variable).

use crate::boot::{BootBench, Inputs, Series};
use crate::significance::{self, Level, Outcome, Verdict};
use crate::stats::Summary;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CompareError {
    #[error(
        "the runs differ in fixed inputs: {}; pass --vary NAME for the one you meant to change",
        .0.iter().map(|(k, a, b)| format!("{k} ({a} vs {b})")).collect::<Vec<_>>().join(", ")
    )]
    InputsDiffer(Vec<(String, String, String)>),
    #[error("unknown input {0:?} for --vary (known: {1})")]
    UnknownInput(String, String),
    #[error("no phase was measured in both runs")]
    NothingInCommon,
}

/// One phase of one series, A against B.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PhaseComparison {
    pub series: String,
    pub phase: String,
    pub a: Summary,
    pub b: Summary,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Comparison {
    pub level: Level,
    /// Inputs that were allowed to differ.
    pub varied: Vec<String>,
    pub phases: Vec<PhaseComparison>,
}

impl Comparison {
    pub fn slower(&self) -> impl Iterator<Item = &PhaseComparison> {
        self.phases.iter().filter(|p| p.outcome.verdict == Verdict::Slower)
    }
}

/// The fixed inputs, by name, as text.
fn fixed(i: &Inputs) -> Vec<(&'static str, String)> {
    let h = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    vec![
        ("vcpus", i.vcpus.to_string()),
        ("mem_mib", i.mem_mib.to_string()),
        ("cmdline", i.cmdline.clone()),
        ("host_kernel", i.host_kernel.clone()),
        ("kvm", format!("{:?}", i.kvm)),
        ("test_guest", h(&i.test_guest_sha256)),
        ("kernel", h(&i.kernel_sha256)),
        ("initrd", h(&i.initrd_sha256)),
    ]
}

/// Fixed inputs that differ between `a` and `b`, except those in `vary`.
pub fn input_differences(
    a: &Inputs,
    b: &Inputs,
    vary: &[String],
) -> Result<Vec<(String, String, String)>, CompareError> {
    let (fa, fb) = (fixed(a), fixed(b));
    let known: Vec<&str> = fa.iter().map(|(k, _)| *k).collect();
    if let Some(v) = vary.iter().find(|v| !known.contains(&v.as_str())) {
        return Err(CompareError::UnknownInput(v.clone(), known.join(", ")));
    }
    Ok(fa
        .into_iter()
        .zip(fb)
        .filter(|((k, va), (_, vb))| va != vb && !vary.iter().any(|v| v == k))
        .map(|((k, va), (_, vb))| (k.to_string(), va, vb))
        .collect())
}

fn samples(s: &Series, phase: &str) -> Vec<u64> {
    s.runs.iter().filter_map(|r| r.get(phase).copied()).collect()
}

/// Every phase measured in both series of each pair, compared as one family.
pub fn compare_pairs(pairs: &[(&Series, &Series)], level: Level) -> Vec<PhaseComparison> {
    let mut todo = Vec::new();
    for (a, b) in pairs {
        for phase in crate::report::ordered_phases(a.summary.keys()) {
            if let (Some(sa), Some(sb)) = (a.summary.get(&phase), b.summary.get(&phase)) {
                let (xa, xb) = (samples(a, &phase), samples(b, &phase));
                todo.push((a.key.to_string(), phase, *sa, *sb, xa, xb));
            }
        }
    }
    let family = todo.len();
    todo.into_iter()
        .map(|(series, phase, sa, sb, xa, xb)| PhaseComparison {
            outcome: significance::compare(&xa, &xb, level, family),
            series,
            phase,
            a: sa,
            b: sb,
        })
        .collect()
}

/// Compares two `isola bench boot` results, series by series.
pub fn compare_benches(
    a: &BootBench,
    b: &BootBench,
    vary: &[String],
    level: Level,
) -> Result<Comparison, CompareError> {
    let diff = input_differences(&a.inputs, &b.inputs, vary)?;
    if !diff.is_empty() {
        return Err(CompareError::InputsDiffer(diff));
    }
    let pairs: Vec<(&Series, &Series)> =
        a.series.iter().filter_map(|sa| Some((sa, b.series.iter().find(|sb| sb.key == sa.key)?))).collect();
    let phases = compare_pairs(&pairs, level);
    if phases.is_empty() {
        return Err(CompareError::NothingInCommon);
    }
    Ok(Comparison { level, varied: vary.to_vec(), phases })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The table `compare` and `ab` print.
pub fn table(c: &Comparison, a_name: &str, b_name: &str) -> String {
    let mut out = format!(
        "{:<28} {:<18} {:>9} {:>9} {:>9} {:>9} {:>7} {:>21} {:>9}  verdict (alpha {} over {} phases, min effect {:.0} %)\n",
        "series",
        "phase",
        format!("{a_name} p50"),
        format!("{a_name} p95"),
        format!("{b_name} p50"),
        format!("{b_name} p95"),
        "ratio",
        "95% CI of diff (ms)",
        "p",
        c.level.alpha,
        c.phases.len(),
        c.level.min_effect * 100.0
    );
    for p in &c.phases {
        let o = &p.outcome;
        out.push_str(&format!(
            "{:<28} {:<18} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7.3} {:>21} {:>9.2e}  {}\n",
            p.series,
            p.phase,
            ms(p.a.p50),
            ms(p.a.p95),
            ms(p.b.p50),
            ms(p.b.p95),
            o.ratio,
            format!("[{:+.2}, {:+.2}]", o.diff_ci.0 / 1000.0, o.diff_ci.1 / 1000.0),
            o.p_value,
            o.verdict
        ));
    }
    out.push_str(&format!("ratio = {b_name} p50 / {a_name} p50; times in ms\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::{Guest, SeriesKey};
    use std::collections::BTreeMap;

    fn bench(offset: u64, kernel: &str) -> BootBench {
        let runs: Vec<BTreeMap<String, u64>> = (0..12u64)
            .map(|i| {
                BTreeMap::from([
                    ("vmm_ready".to_string(), 1000 + i * 7 % 50),
                    ("exited".to_string(), 9000 + offset + i * 37 % 300),
                ])
            })
            .collect();
        BootBench {
            provenance: Default::default(),
            inputs: Inputs {
                runs: 12,
                warmup: 0,
                vcpus: 1,
                mem_mib: 128,
                cmdline: "c".into(),
                host_kernel: "6.1".into(),
                kvm: isola_sandbox::KvmKind::Pvm,
                test_guest_sha256: Some("t".into()),
                kernel_sha256: Some(kernel.into()),
                initrd_sha256: None,
            },
            series: vec![Series {
                key: SeriesKey { backend: "isola-vmm".into(), guest: Guest::TestGuest },
                summary: crate::boot::summarize(&runs),
                runs,
                overhead_kib: vec![],
                failures: vec![],
            }],
            ratios: vec![],
            not_run: vec![],
        }
    }

    #[test]
    fn a_slower_phase_is_found_and_an_unchanged_one_is_not() {
        let c = compare_benches(&bench(0, "k"), &bench(3000, "k"), &[], Level::default()).expect("compare");
        let v: Vec<(&str, Verdict)> = c.phases.iter().map(|p| (p.phase.as_str(), p.outcome.verdict)).collect();
        assert_eq!(v, [("vmm_ready", Verdict::NoSignificantDifference), ("exited", Verdict::Slower)]);
        assert!(table(&c, "A", "B").contains("SLOWER"));
    }

    #[test]
    fn different_fixed_inputs_are_refused_by_name_unless_varied() {
        let e = compare_benches(&bench(0, "k1"), &bench(0, "k2"), &[], Level::default()).expect_err("kernels differ");
        assert_eq!(e, CompareError::InputsDiffer(vec![("kernel".into(), "k1".into(), "k2".into())]));
        assert!(e.to_string().contains("kernel (k1 vs k2)"), "{e}");
        compare_benches(&bench(0, "k1"), &bench(0, "k2"), &["kernel".into()], Level::default()).expect("varied");
        let e =
            compare_benches(&bench(0, "k"), &bench(0, "k"), &["kernal".into()], Level::default()).expect_err("typo");
        assert!(matches!(e, CompareError::UnknownInput(..)), "{e}");
    }
}
