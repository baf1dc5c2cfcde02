//! A JSON document a command reads from a file, or from stdin for `-` (runc's
//! `--process -`, `--resources -`), parsed into its type with the path in the error.

use std::io::Read;
use std::path::Path;

use crate::error::{io, RuntimeError};

/// Reads `p` (stdin for `-`, at most 1 MiB) and parses it as `T`.
pub fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T, RuntimeError> {
    let mut text = String::new();
    if p == Path::new("-") {
        std::io::stdin().take(1 << 20).read_to_string(&mut text).map_err(io("reading", p))?;
    } else {
        text = std::fs::read_to_string(p).map_err(io("reading", p))?;
    }
    serde_json::from_str(&text).map_err(|e| RuntimeError::Invalid(format!("{}: {e}", p.display())))
}
