//! Sizes and counts as `isola run` and `isola pool fill` take them (`-m`, `--cpus`).

/// `-m`: a size as Docker writes it (`512m`, `1g`, `1.5g`, `262144k`, `536870912b`;
/// units b, k, m, g, t, optionally followed by `b`, any case), rounded up to whole MiB.
/// A plain number means MiB (Docker reads bytes there; isola's `-m` always took MiB).
/// Bounded so the byte count and the VM's size cannot overflow.
pub fn parse_memory_mib(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let digits = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits);
    // "b" alone is bytes ("512b"); "mb", "gb" are the same as "m", "g".
    let shift = match unit.strip_suffix('b').filter(|u| !u.is_empty()).unwrap_or(unit) {
        "" => 20,
        "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{s:?}: unknown size unit {unit:?} (b, k, m, g or t; a plain number is MiB)")),
    };
    let value: f64 =
        number.parse().map_err(|_| format!("{s:?} is not a size (e.g. 512m, 1g; a plain number is MiB)"))?;
    let bytes = value * (1u64 << shift) as f64;
    let mib = (bytes / (1u64 << 20) as f64).ceil();
    if !(mib.is_finite() && (4.0..=(1u64 << 20) as f64).contains(&mib)) {
        return Err(format!("{s} is out of range (4 MiB to 1 TiB)"));
    }
    Ok(mib as u64)
}

/// `--cpus`: a positive number of CPUs, at most 255 (the VM's vCPU count).
pub fn parse_cpus(s: &str) -> Result<f64, String> {
    let c: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of CPUs"))?;
    if !(c > 0.0 && c <= 255.0) {
        return Err(format!("{s} CPUs is out of range (more than 0, at most 255)"));
    }
    Ok(c)
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn memory_sizes_are_read_as_docker_writes_them() {
        for (given, mib) in [
            ("512m", 512),
            ("512M", 512),
            ("512mb", 512),
            ("1g", 1024),
            ("1.5G", 1536),
            ("262144k", 256),
            ("536870912b", 512),
            ("536870913b", 513),
            ("1t", 1 << 20),
            ("64", 64),
        ] {
            assert_eq!(parse_memory_mib(given), Ok(mib), "{given}");
        }
    }

    #[test]
    fn memory_and_cpus_out_of_range_are_refused_by_name() {
        assert_eq!(parse_memory_mib("512"), Ok(512));
        for bad in ["0", "18446744073709551615", "2000000", "-1", "3m", "2t", "1e9"] {
            let e = parse_memory_mib(bad).expect_err(bad);
            assert!(e.contains("MiB") || e.contains("size"), "{bad}: {e}");
        }
        for bad in ["1x", "m", "1.2.3g", "", "1 g"] {
            assert!(parse_memory_mib(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        for bad in ["0", "-1", "256", "NaN", "inf", "x"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }
}
