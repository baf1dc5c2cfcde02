//! Registry credentials: isola's own file (`isola login`, 0600, never logged) and,
//! after it, Docker's `config.json` `auths` (`$DOCKER_CONFIG`, else `~/.docker`), so a
//! machine already logged in with Docker pulls with the same credentials.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use base64::Engine;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, in any log or error.
        write!(f, "Credentials({:?}, <password>)", self.username)
    }
}

impl Credentials {
    /// `Basic` for the Authorization header.
    pub fn basic(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.username, self.password))
    }

    fn from_basic(b64: &str) -> Option<Self> {
        let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
        let (u, p) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
        Some(Credentials { username: u.into(), password: p.into() })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("credentials file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("credentials file {0} is not valid JSON: {1}")]
    Json(PathBuf, serde_json::Error),
}

/// The most of a credentials file that is read.
const MAX_FILE: u64 = 1 << 20;

/// isola's credentials file: `$ISOLA_AUTH_FILE`, else `~/.config/isola/auth.json`.
pub fn isola_file() -> PathBuf {
    if let Some(p) = std::env::var_os("ISOLA_AUTH_FILE") {
        return p.into();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/root".into());
    home.join(".config/isola/auth.json")
}

/// Docker's client config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_file() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/root".into());
    home.join(".docker/config.json")
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>, AuthError> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuthError::Io(path.into(), e)),
    };
    let mut s = String::new();
    f.take(MAX_FILE).read_to_string(&mut s).map_err(|e| AuthError::Io(path.into(), e))?;
    serde_json::from_str(&s).map(Some).map_err(|e| AuthError::Json(path.into(), e))
}

/// The keys a registry goes by in an `auths` map (Docker Hub has its legacy URL).
fn keys(registry: &str) -> Vec<String> {
    let mut k = vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")];
    if registry == crate::reference::DOCKER_HUB {
        k.push("https://index.docker.io/v1/".into());
        k.push("index.docker.io".into());
    }
    k
}

fn from_auths(v: &serde_json::Value, registry: &str) -> Option<Credentials> {
    let auths = v.get("auths")?;
    keys(registry).iter().find_map(|k| {
        let e = auths.get(k)?;
        if let Some(b) = e.get("auth").and_then(|a| a.as_str()) {
            return Credentials::from_basic(b);
        }
        let (u, p) = (e.get("username")?.as_str()?, e.get("password")?.as_str()?);
        Some(Credentials { username: u.into(), password: p.into() })
    })
}

/// The credentials for `registry`: isola's file first, then Docker's.
pub fn lookup(registry: &str) -> Result<Option<Credentials>, AuthError> {
    for path in [isola_file(), docker_file()] {
        if let Some(c) = read_json(&path)?.and_then(|v| from_auths(&v, registry)) {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Writes isola's file with `registry` set to `creds` (None removes it): whole, 0600,
/// through a temporary file renamed into place. Returns whether an entry was removed.
pub fn store(registry: &str, creds: Option<&Credentials>) -> Result<bool, AuthError> {
    let path = isola_file();
    let mut auths: BTreeMap<String, serde_json::Value> = read_json(&path)?
        .and_then(|v| v.get("auths").and_then(|a| serde_json::from_value(a.clone()).ok()))
        .unwrap_or_default();
    let removed = auths.remove(registry).is_some();
    if let Some(c) = creds {
        auths.insert(registry.into(), serde_json::json!({ "auth": c.basic() }));
    }
    let io = |e| AuthError::Io(path.clone(), e);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    }
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(&serde_json::json!({ "auths": auths }))
        .map_err(|e| AuthError::Json(path.clone(), e))?;
    crate::store::write_atomic(&path, &tmp, &body).map_err(io)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_auths_are_read_in_both_forms_and_hub_by_its_legacy_key() {
        let v = serde_json::json!({"auths": {
            "r.example:5000": {"auth": Credentials { username: "u".into(), password: "p:w".into() }.basic()},
            "https://index.docker.io/v1/": {"username": "hub", "password": "tok"},
        }});
        let c = from_auths(&v, "r.example:5000").expect("auth form");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:w"));
        let c = from_auths(&v, "docker.io").expect("legacy hub key");
        assert_eq!(c.username, "hub");
        assert_eq!(from_auths(&v, "other.example"), None);
        assert!(!format!("{c:?}").contains("tok"), "Debug never shows the password");
    }
}
