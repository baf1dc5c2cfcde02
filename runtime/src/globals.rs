//! What every command shares: the global flags and the spec version reported.

use std::path::PathBuf;

/// The runtime-spec version the state document reports.
pub const OCI_VERSION: &str = "1.2.1";

/// The global flags that matter to every command (and reach the keeper and relays).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Globals {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub log_format: String,
    pub debug: bool,
}
