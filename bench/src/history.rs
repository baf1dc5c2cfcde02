//! The history table in bench/README.md: one row of headline ratios per release,
//! written by `isola bench history` between two marker comments.

use crate::boot::{BootBench, Guest};

pub const START: &str = "<!-- bench-history:start -->";
pub const END: &str = "<!-- bench-history:end -->";
const HEADER: &str = "| release | host | test guest to marker, isola-vmm / qemu-kvm | VMM overhead, isola-vmm (KiB) | container total, isola / runc |\n| --- | --- | --- | --- | --- |\n";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HistoryError {
    #[error("no history table: the file has no {START} … {END} markers")]
    NoTable,
}

fn ratio(b: &BootBench, guest: Guest, phase: &str, peer: &str) -> String {
    b.ratios
        .iter()
        .find(|r| r.guest == guest && r.phase == phase && r.peer == peer)
        .map_or("-".into(), |r| format!("{:.2}", r.ratio))
}

/// The row for `release`.
pub fn row(release: &str, b: &BootBench) -> String {
    let overhead = b
        .series
        .iter()
        .find(|s| s.key.backend == "isola-vmm" && !s.overhead_kib.is_empty())
        .and_then(|s| crate::Summary::of(&s.overhead_kib))
        .map_or("-".into(), |o| o.p50.to_string());
    format!(
        "| {release} | {} ({:?}) | {} | {overhead} | {} |\n",
        b.inputs.host_kernel,
        b.inputs.kvm,
        ratio(b, Guest::TestGuest, "console_marker", "qemu-kvm"),
        ratio(b, Guest::Container, "total", "runc"),
    )
}

/// `text` with the row for `release` added, or replaced if it is there already.
pub fn add_row(text: &str, release: &str, b: &BootBench) -> Result<String, HistoryError> {
    let start = text.find(START).ok_or(HistoryError::NoTable)? + START.len();
    let end = text[start..].find(END).ok_or(HistoryError::NoTable)? + start;
    let prefix = format!("| {release} |");
    let mut rows: Vec<String> = text[start..end]
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| release") && !l.starts_with("| ---"))
        .filter(|l| !l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    rows.push(row(release, b));
    Ok(format!("{}\n{HEADER}{}{}", &text[..start], rows.concat(), &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench() -> BootBench {
        serde_json::from_value(serde_json::json!({
            "inputs": {"runs": 1, "warmup": 0, "vcpus": 1, "mem_mib": 128, "cmdline": "", "host_kernel": "6.1",
                       "kvm": "pvm", "test_guest_sha256": null, "kernel_sha256": null, "initrd_sha256": null},
            "series": [],
            "ratios": [{"guest": "TestGuest", "phase": "console_marker", "peer": "qemu-kvm",
                        "isola_p50_us": 10, "peer_p50_us": 30, "ratio": 0.333}],
            "not_run": []
        }))
        .expect("bench json")
    }

    #[test]
    fn rows_are_added_once_per_release() {
        let text = format!("# Bench\n\n{START}\n{END}\nafter\n");
        let once = add_row(&text, "v0.1", &bench()).expect("row");
        assert!(once.contains("| v0.1 | 6.1 (Pvm) | 0.33 | - | - |"), "{once}");
        let twice = add_row(&once, "v0.1", &bench()).expect("again");
        assert_eq!(twice.matches("| v0.1 |").count(), 1, "{twice}");
        let more = add_row(&twice, "v0.2", &bench()).expect("next");
        assert!(more.find("| v0.1 |") < more.find("| v0.2 |"));
        assert!(more.ends_with("after\n"));
        assert_eq!(add_row("no table", "v", &bench()), Err(HistoryError::NoTable));
    }
}
