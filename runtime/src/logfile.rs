//! `--log FILE --log-format text|json`: where runc writes its messages. containerd's
//! runc shim reads the last error from this file (JSON lines with `level`, `msg`,
//! `time`) to explain a failed `create`, so ours are written the same way.

use std::io::Write;
use std::sync::Mutex;

pub struct FileLog {
    out: Mutex<Box<dyn Write + Send>>,
    json: bool,
    level: log::LevelFilter,
}

impl log::Log for FileLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format_line(self.json, r.level(), &r.args().to_string());
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }

    fn flush(&self) {}
}

/// One line as runc (logrus) writes it.
pub fn format_line(json: bool, level: log::Level, msg: &str) -> String {
    let level = level.as_str().to_ascii_lowercase();
    let time = crate::state::rfc3339_now();
    if json {
        format!("{}\n", serde_json::json!({"level": level, "msg": msg, "time": time}))
    } else {
        format!("time=\"{time}\" level={level} msg={msg:?}\n")
    }
}

/// Installs the logger: the file (appended) when given, else stderr.
pub fn init(path: Option<&std::path::Path>, json: bool, debug: bool) {
    let out: Box<dyn Write + Send> = match path.map(|p| std::fs::OpenOptions::new().create(true).append(true).open(p)) {
        Some(Ok(f)) => Box::new(f),
        _ => Box::new(std::io::stderr()),
    };
    let level = if debug { log::LevelFilter::Debug } else { log::LevelFilter::Warn };
    if log::set_boxed_logger(Box::new(FileLog { out: Mutex::new(out), json, level })).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_level_msg_and_time_as_the_runc_shim_reads_them() {
        let line = format_line(true, log::Level::Error, "container \"x\" does not exist");
        let v: serde_json::Value = serde_json::from_str(line.trim()).expect("json");
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        let text = format_line(false, log::Level::Warn, "a b");
        assert!(text.contains("level=warn msg=\"a b\""), "{text}");
    }
}
