//! SVG of a boot benchmark: one stacked bar per series, each segment the p50 time
//! between consecutive phases.

use plotters::prelude::*;

use crate::boot::BootBench;
use crate::report::ordered_phases;

const COLORS: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

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

pub fn write_svg(b: &BootBench, path: &std::path::Path) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError { path: path.display().to_string(), reason: e.to_string() };
    let rows: Vec<(String, Vec<Segment>)> =
        b.series.iter().map(|s| (s.key.to_string(), segments(&s.summary))).collect();
    let max = rows.iter().flat_map(|(_, s)| s.iter().map(|x| x.2)).fold(1.0f64, f64::max) * 1.1;
    let height = 120 + 60 * rows.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("isola bench boot: p50 phase times (ms since VMM spawn)", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(190)
        .build_cartesian_2d(0.0..max, 0.0..rows.len() as f64)
        .map_err(|e| err(&e))?;
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len().max(1))
        .y_label_formatter(&|y| labels.get(*y as usize).cloned().unwrap_or_default())
        .x_desc("ms")
        .draw()
        .map_err(|e| err(&e))?;
    let names = ordered_phases(b.series.iter().flat_map(|s| s.summary.keys()));
    for (pi, phase) in names.iter().enumerate() {
        let color = COLORS[pi % COLORS.len()];
        let bars: Vec<Rectangle<(f64, f64)>> = rows
            .iter()
            .enumerate()
            .flat_map(|(ri, (_, segs))| {
                segs.iter()
                    .filter(|s| &s.0 == phase)
                    .map(move |s| Rectangle::new([(s.1, ri as f64 + 0.2), (s.2, ri as f64 + 0.8)], color.filled()))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(|e| err(&e))?
            .label(phase.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw().map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(write_svg(&b, std::path::Path::new("/nonexistent/dir/x.svg")).is_err());
    }
}
