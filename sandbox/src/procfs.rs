//! What `/proc/<pid>/stat` says of a process: one reader for whether it runs and when
//! it started (a start time tells a process from a later one given the same pid).

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: R, S, D, Z…
    pub state: char,
    /// Field 22: when the process started, in clock ticks since boot.
    pub start_ticks: u64,
}

/// Parses one `stat` line. The command name (field 2) may hold spaces and `)`, so
/// fields are counted from its last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let rest = line.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), starttime is 19 further.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_ticks })
}

/// `pid`'s stat, or None when there is no such process.
pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// When `pid` started, if it runs (a zombie is dead for our purposes).
pub fn start_ticks(pid: i32) -> Option<u64> {
    stat(pid).filter(|s| s.state != 'Z').map(|s| s.start_ticks)
}

/// Is `pid` a process that runs? A zombie (state Z) is not.
pub fn running(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_after_the_last_paren_of_the_name() {
        let line = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_stat(line), Some(Stat { state: 'S', start_ticks: 123456 }));
        assert_eq!(parse_stat("42 (x) Z 1"), None, "truncated");
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_runs_and_keeps_its_start_time() {
        let me = std::process::id() as i32;
        assert!(running(me));
        assert_eq!(start_ticks(me), start_ticks(me));
        assert!(start_ticks(me).is_some());
        assert!(!running(i32::MAX - 1));
    }
}
