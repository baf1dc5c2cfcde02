//! Signals as users name them: one parser for `isola kill -s` and `isola-runtime kill`.

/// The highest signal number Linux has (SIGRTMAX).
pub const MAX: u32 = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown signal {0:?} (a number 1-64, or a name such as TERM or SIGKILL)")]
pub struct UnknownSignal(pub String);

/// A signal by number (1-64), or by name with or without `SIG`, in any case (as runc
/// and kill(1) take them).
pub fn parse(s: &str) -> Result<u32, UnknownSignal> {
    if let Ok(n) = s.parse::<u32>() {
        return if (1..=MAX).contains(&n) { Ok(n) } else { Err(UnknownSignal(s.to_string())) };
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse::<nix::sys::signal::Signal>().map(|s| s as u32).map_err(|_| UnknownSignal(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_in_any_case_and_nothing_else() {
        assert_eq!(parse("9"), Ok(9));
        assert_eq!(parse("64"), Ok(64));
        assert_eq!(parse("TERM"), Ok(15));
        assert_eq!(parse("sigint"), Ok(2));
        assert_eq!(parse("SIGKILL"), Ok(9));
        for bad in ["0", "65", "-9", "NOPE", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
