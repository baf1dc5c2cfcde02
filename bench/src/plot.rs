//! SVG of a boot benchmark: one stacked bar per series, each segment the p50 time
//! between consecutive phases.

use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordusize};
use plotters::prelude::*;

use crate::boot::BootBench;
use crate::report::ordered_phases;

/// The first colours, distinct to the eye; more phases than these get evenly spaced
/// hues instead ([`palette`]), so no two phases of one chart share a colour.
const COLORS: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 128),
    RGBColor(128, 64, 0),
];

/// `n` colours, all different.
pub fn palette(n: usize) -> Vec<RGBColor> {
    if n <= COLORS.len() {
        return COLORS[..n].to_vec();
    }
    (0..n)
        .map(|i| {
            let (r, g, b) = HSLColor(i as f64 / n as f64, 0.65, if i % 2 == 0 { 0.42 } else { 0.58 }).rgb();
            RGBColor(r, g, b)
        })
        .collect()
}

/// Segments (phase, start ms, end ms) of one series, by p50, in time order.
pub fn segments(summary: &std::collections::BTreeMap<String, crate::Summary>) -> Vec<(String, f64, f64)> {
    let mut points: Vec<(String, f64)> = ordered_phases(summary.keys())
        .into_iter()
        .filter_map(|p| Some((p.clone(), summary.get(&p)?.p50 as f64 / 1000.0)))
        .collect();
    points.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut prev = 0.0;
    points
        .into_iter()
        .map(|(name, end)| {
            let seg = (name, prev, end);
            prev = end;
            seg
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {reason}")]
pub struct PlotError {
    path: String,
    reason: String,
}

/// (phase, start ms, end ms) of one stacked bar segment.
type Segment = (String, f64, f64);

/// A chart with one labelled row per entry of `labels` (segmented, so each label sits
/// at the middle of its own row) over the horizontal range `x`.
struct RowsArea {
    caption: String,
    x: std::ops::Range<f64>,
    labels: Vec<String>,
    label_width: u32,
}

type RowsChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, SegmentedCoord<RangedCoordusize>>>;

impl RowsArea {
    fn chart<'a, 'b>(
        &self,
        area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
        x_desc: &str,
        x_tick: &dyn Fn(&f64) -> String,
    ) -> Result<RowsChart<'a, 'b>, Box<dyn std::error::Error + 'a>> {
        let n = self.labels.len().max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(&self.caption, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(self.label_width)
            // A one-row axis needs two segments to place its label.
            .build_cartesian_2d(self.x.clone(), (0..n.max(2) - 1).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n.max(2))
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(i) => self.labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .x_label_formatter(x_tick)
            .x_desc(x_desc)
            .draw()?;
        Ok(chart)
    }
}

/// Whether the bars span more than 100×: then the time axis is logarithmic.
fn wants_log(rows: &[(String, Vec<Segment>)]) -> bool {
    let ends: Vec<f64> = rows.iter().filter_map(|(_, s)| s.last().map(|x| x.2)).filter(|e| *e > 0.0).collect();
    let (lo, hi) = ends.iter().fold((f64::MAX, 0.0f64), |(lo, hi), e| (lo.min(*e), hi.max(*e)));
    !ends.is_empty() && hi / lo > 100.0
}

/// One stacked bar per series (every bar labelled on its own row), one colour per
/// phase, the legend beside the chart, a log time axis when series differ by 100×.
pub fn write_svg(b: &BootBench, path: &std::path::Path) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError { path: path.display().to_string(), reason: e.to_string() };
    let rows: Vec<(String, Vec<Segment>)> =
        b.series.iter().map(|s| (s.key.to_string(), segments(&s.summary))).collect();
    let log = wants_log(&rows);
    // On a log axis a bar starts at a tenth of the shortest phase end, not at 0.
    let floor =
        rows.iter().flat_map(|(_, s)| s.iter().map(|x| x.2)).filter(|e| *e > 0.0).fold(f64::MAX, f64::min) / 10.0;
    let x = |ms: f64| if log { ms.max(floor).log10() } else { ms };
    let max = rows.iter().flat_map(|(_, s)| s.iter().map(|x| x.2)).fold(1.0f64, f64::max);
    let (x0, x1) = if log { (floor.log10(), max.log10() + 0.1) } else { (0.0, max * 1.05) };
    let names = ordered_phases(b.series.iter().flat_map(|s| s.summary.keys()));
    let height = (140 + 50 * rows.len() as u32).max(100 + 22 * names.len() as u32);
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (plot, legend) = root.split_horizontally(880);
    let caption =
        if log { "p50 phase times, ms since VMM spawn (log scale)" } else { "p50 phase times, ms since VMM spawn" };
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let tick = |v: &f64| if log { format!("{:.3}", 10f64.powf(*v)) } else { format!("{v:.0}") };
    let rows_area = RowsArea { caption: format!("isola bench boot: {caption}"), x: x0..x1, labels, label_width: 210 };
    let mut chart = rows_area.chart(&plot, "ms", &tick).map_err(|e| err(&e))?;
    let colors = palette(names.len());
    for (phase, &color) in names.iter().zip(&colors) {
        let bars: Vec<Rectangle<(f64, SegmentValue<usize>)>> = rows
            .iter()
            .enumerate()
            .flat_map(|(ri, (_, segs))| {
                segs.iter().filter(|s| &s.0 == phase).map(move |s| {
                    let mut r = Rectangle::new(
                        [(x(s.1), SegmentValue::Exact(ri)), (x(s.2), SegmentValue::Exact(ri + 1))],
                        color.filled(),
                    );
                    r.set_margin(8, 8, 0, 0);
                    r
                })
            })
            .collect();
        chart.draw_series(bars).map_err(|e| err(&e))?;
    }
    draw_legend(&legend, &names, path)?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    names: &[String],
    path: &std::path::Path,
) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError { path: path.display().to_string(), reason: e.to_string() };
    for (i, (name, color)) in names.iter().zip(palette(names.len())).enumerate() {
        let y = 50 + 22 * i as i32;
        area.draw(&Rectangle::new([(10, y), (24, y + 14)], color.filled())).map_err(|e| err(&e))?;
        area.draw(&Text::new(name.clone(), (30, y), ("sans-serif", 14))).map_err(|e| err(&e))?;
    }
    Ok(())
}

/// (row label, A's samples, B's samples) of every phase measured by both sides.
pub type DistributionPair = (String, Vec<u64>, Vec<u64>);

/// The phases both `a` and `b` (matched by series key, or the single series each when
/// they are named differently, as in `ab`) measured.
pub fn distribution_pairs(a: &[crate::boot::Series], b: &[crate::boot::Series]) -> Vec<DistributionPair> {
    let mut out = Vec::new();
    for sa in a {
        let sb = b.iter().find(|s| s.key == sa.key).or(if a.len() == 1 && b.len() == 1 { b.first() } else { None });
        let Some(sb) = sb else { continue };
        for phase in ordered_phases(sa.summary.keys()) {
            let xa: Vec<u64> = sa.runs.iter().filter_map(|r| r.get(&phase).copied()).collect();
            let xb: Vec<u64> = sb.runs.iter().filter_map(|r| r.get(&phase).copied()).collect();
            if !xa.is_empty() && !xb.is_empty() {
                out.push((format!("{:?} {phase}", sa.key.guest), xa, xb));
            }
        }
    }
    out
}

/// Box plots (min, quartiles, median, max) of A and B for every phase, on one axis:
/// each value divided by A's median for that phase, so phases of any length compare.
pub fn write_distributions(
    pairs: &[DistributionPair],
    a_name: &str,
    b_name: &str,
    path: &std::path::Path,
) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError { path: path.display().to_string(), reason: e.to_string() };
    let q = |v: &[u64], p: u32| {
        let mut s = v.to_vec();
        s.sort_unstable();
        crate::stats::percentile(&s, p).unwrap_or(0) as f64
    };
    // (label, min, p25, p50, p75, max) relative to A's median.
    let mut boxes: Vec<(String, [f64; 5], RGBColor)> = Vec::new();
    for (label, a, b) in pairs {
        let base = q(a, 50).max(1.0);
        for (name, v, color) in [(a_name, a, COLORS[0]), (b_name, b, COLORS[1])] {
            let stats = [q(v, 0), q(v, 25), q(v, 50), q(v, 75), q(v, 100)].map(|x| x / base);
            boxes.push((format!("{label} · {name}"), stats, color));
        }
    }
    let lo = boxes.iter().map(|b| b.1[0]).fold(1.0f64, f64::min).min(0.9) * 0.95;
    let hi = boxes.iter().map(|b| b.1[4]).fold(1.0f64, f64::max).max(1.1) * 1.05;
    let n = boxes.len().max(1);
    let root = SVGBackend::new(path, (1000, 120 + 28 * n as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let labels: Vec<String> = boxes.iter().map(|b| b.0.clone()).collect();
    let rows_area = RowsArea {
        caption: format!("{a_name} vs {b_name}: each phase relative to {a_name}'s median"),
        x: lo..hi,
        labels,
        label_width: 300,
    };
    let mut chart =
        rows_area.chart(&root, &format!("time / {a_name}'s median"), &|v| format!("{v:.1}")).map_err(|e| err(&e))?;
    for (i, (_, [min, p25, p50, p75, max], color)) in boxes.iter().enumerate() {
        let mut r = Rectangle::new(
            [(*p25, SegmentValue::Exact(i)), (*p75, SegmentValue::Exact(i + 1))],
            color.mix(0.6).filled(),
        );
        r.set_margin(5, 5, 0, 0);
        chart.draw_series([r]).map_err(|e| err(&e))?;
        let mid = SegmentValue::CenterOf(i);
        chart
            .draw_series([
                PathElement::new(vec![(*min, mid.clone()), (*max, mid)], BLACK),
                PathElement::new(
                    vec![(*p50, SegmentValue::Exact(i)), (*p50, SegmentValue::Exact(i + 1))],
                    BLACK.stroke_width(2),
                ),
            ])
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_phases_share_a_colour() {
        for n in [1, 11, 12, 13, 15, 30] {
            let mut c: Vec<(u8, u8, u8)> = palette(n).iter().map(|c| (c.0, c.1, c.2)).collect();
            assert_eq!(c.len(), n);
            c.sort();
            c.dedup();
            assert_eq!(c.len(), n, "{n} phases");
        }
    }
    use std::collections::BTreeMap;

    #[test]
    fn segments_are_contiguous_in_time_order() {
        let s = |p50| crate::Summary { n: 1, min: p50, p50, p95: p50, p99: p50, max: p50 };
        let m = BTreeMap::from([
            ("exited".to_string(), s(9000)),
            ("vmm_ready".into(), s(2000)),
            ("boot_timer".into(), s(5000)),
        ]);
        let seg = segments(&m);
        assert_eq!(
            seg,
            vec![("vmm_ready".into(), 0.0, 2.0), ("boot_timer".into(), 2.0, 5.0), ("exited".into(), 5.0, 9.0)]
        );
    }
}

#[cfg(test)]
mod svg_tests {
    use super::*;
    use crate::boot::{BootBench, Guest, Inputs, Series, SeriesKey};
    use std::collections::BTreeMap;

    #[test]
    fn svg_names_every_series_and_phase() {
        let runs = vec![BTreeMap::from([("vmm_ready".to_string(), 2000u64), ("exited".to_string(), 9000)])];
        let series = Series {
            key: SeriesKey { backend: "isola-vmm".into(), guest: Guest::TestGuest },
            summary: crate::boot::summarize(&runs),
            runs,
            overhead_kib: vec![],
            failures: vec![],
        };
        let b = BootBench {
            provenance: Default::default(),
            inputs: Inputs {
                runs: 1,
                warmup: 0,
                vcpus: 1,
                mem_mib: 128,
                cmdline: String::new(),
                host_kernel: String::new(),
                kvm: isola_sandbox::KvmKind::Pvm,
                test_guest_sha256: None,
                kernel_sha256: None,
                initrd_sha256: None,
            },
            series: vec![series],
            ratios: vec![],
            not_run: vec![],
        };
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("x.svg");
        write_svg(&b, &p).expect("svg");
        let svg = std::fs::read_to_string(&p).expect("read");
        for needle in ["<svg", "isola-vmm / TestGuest", "vmm_ready", "exited"] {
            assert!(svg.contains(needle), "{needle} missing");
        }
        let pairs = distribution_pairs(&b.series, &b.series);
        assert_eq!(pairs.len(), 2);
        write_distributions(&pairs, "A", "B", &p).expect("distribution svg");
        let svg = std::fs::read_to_string(&p).expect("read");
        for needle in ["TestGuest vmm_ready · A", "TestGuest exited · B", "relative to A"] {
            assert!(svg.contains(needle), "{needle} missing");
        }
        assert!(write_svg(&b, std::path::Path::new("/nonexistent/dir/x.svg")).is_err());
    }
}
