//! Files the CLI writes (bench results, plots): their directory is created first.

use anyhow::Context;

/// Writes `text` to `path`, creating its directory.
pub(crate) fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
