//! Pulling from a Docker Registry HTTP API v2 / OCI distribution registry: manifest
//! (index → linux/amd64), config and layers verified by digest into the store, with
//! anonymous bearer-token auth and plain HTTP for loopback registries.

use std::io::Read;
use std::time::Duration;

use oci_spec::image::ImageManifest;

use crate::manifest::{self, Fetched};
use crate::store::{sha256_of, ImageRecord, Store, StoreError};
use crate::Reference;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("registry {registry} unreachable: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("{what} not found in {registry} (HTTP 404)")]
    NotFound { what: String, registry: String },
    #[error("registry refused {what}: HTTP {status}{body}")]
    Http { what: String, status: u16, body: String },
    #[error("authentication with {0} failed: {1}")]
    Auth(String, String),
    #[error("download: {0}")]
    Worker(String),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
struct Session<'a> {
    agent: ureq::Agent,
    r: &'a Reference,
    /// The Authorization header once a challenge was answered (`Bearer …` or `Basic …`).
    auth: Option<String>,
}

fn www_authenticate_params(h: &str) -> Option<(String, Vec<(String, String)>)> {
    let rest = h.strip_prefix("Bearer ")?;
    let mut realm = None;
    let mut params = Vec::new();
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let v = v.trim_matches('"').to_string();
        if k == "realm" {
            realm = Some(v);
        } else {
            params.push((k.to_string(), v));
        }
    }
    Some((realm?, params))
}

/// The most a token endpoint's reply may hold.
const TOKEN_REPLY_MAX: u64 = 1 << 20;

/// Where a registry may send us for a token: HTTPS, or plain HTTP only from a
/// loopback registry to a loopback realm (never from HTTPS down to HTTP, nor to
/// another scheme).
fn check_realm(realm: &str, registry_scheme: &str) -> Result<(), String> {
    let (scheme, rest) = realm.split_once("://").ok_or_else(|| format!("token realm {realm:?} is not a URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let bare = if host.starts_with('[') { host.split(']').next().map(|h| &h[1..]) } else { host.split(':').next() };
    let loopback = matches!(bare, Some("localhost" | "127.0.0.1" | "::1"));
    match scheme.to_ascii_lowercase().as_str() {
        "https" if !host.is_empty() => Ok(()),
        "http" if registry_scheme == "http" && loopback => Ok(()),
        _ => Err(format!("refusing token realm {realm:?}: only https (or http between loopback addresses)")),
    }
}

impl<'a> Session<'a> {
    fn new(r: &'a Reference) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(60))
            .build();
        Self { agent, r, auth: None }
    }

    /// This registry's stored credentials (`isola login`, or Docker's config).
    fn credentials(&self) -> Result<Option<crate::auth::Credentials>, PullError> {
        crate::auth::lookup(&self.r.registry).map_err(|e| PullError::Auth(self.r.registry.clone(), e.to_string()))
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}/v2/{}/{path}", self.r.scheme(), self.r.api_host(), self.r.repository)
    }

    fn login(&mut self, challenge: &str) -> Result<(), PullError> {
        let creds = self.credentials()?;
        self.answer(challenge, creds.as_ref())
    }

    /// Answers a 401's `WWW-Authenticate` challenge: Basic with `creds`, or a Bearer
    /// token from the realm (with `creds`, when there are any).
    fn answer(&mut self, challenge: &str, creds: Option<&crate::auth::Credentials>) -> Result<(), PullError> {
        let reg = self.r.registry.clone();
        if challenge.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("basic ")) {
            let c = creds.ok_or_else(|| {
                PullError::Auth(reg.clone(), format!("the registry wants credentials: run `isola login {reg}`"))
            })?;
            self.auth = Some(format!("Basic {}", c.basic()));
            return Ok(());
        }
        let (realm, params) = www_authenticate_params(challenge)
            .ok_or_else(|| PullError::Auth(reg.clone(), format!("unsupported challenge {challenge:?}")))?;
        check_realm(&realm, self.r.scheme()).map_err(|why| PullError::Auth(reg.clone(), why))?;
        let mut req = self.agent.get(&realm);
        for (k, v) in &params {
            req = req.query(k, v);
        }
        if let Some(c) = creds {
            req = req.set("Authorization", &format!("Basic {}", c.basic()));
        }
        let reply = req.call().map_err(|e| match e {
            ureq::Error::Status(401 | 403, _) => {
                PullError::Auth(reg.clone(), "the token service refused the credentials".into())
            }
            e => PullError::Auth(reg.clone(), e.to_string()),
        })?;
        // A token reply is small; a hostile one may not make us read without end.
        let body: serde_json::Value = serde_json::from_reader(reply.into_reader().take(TOKEN_REPLY_MAX))
            .map_err(|e| PullError::Auth(reg.clone(), format!("token reply: {e}")))?;
        let token = body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .ok_or_else(|| PullError::Auth(reg, "no token in the reply".into()))?;
        self.auth = Some(format!("Bearer {token}"));
        Ok(())
    }

    /// GET with auth, retrying once after a bearer challenge.
    fn get(&mut self, path: &str, accept: Option<&str>, what: &str) -> Result<ureq::Response, PullError> {
        for attempt in 0..2 {
            let mut req = self.agent.get(&self.url(path));
            if let Some(a) = accept {
                req = req.set("Accept", a);
            }
            if let Some(a) = &self.auth {
                req = req.set("Authorization", a);
            }
            match req.call() {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if attempt == 0 => {
                    let challenge = resp.header("www-authenticate").unwrap_or_default().to_string();
                    self.login(&challenge)?;
                }
                Err(ureq::Error::Status(404, _)) => {
                    return Err(PullError::NotFound { what: what.into(), registry: self.r.registry.clone() })
                }
                Err(ureq::Error::Status(status, resp)) => {
                    let body = resp.into_string().map(|b| format!(": {}", b.trim())).unwrap_or_default();
                    return Err(PullError::Http { what: what.into(), status, body });
                }
                Err(e) => {
                    return Err(PullError::Unreachable { registry: self.r.registry.clone(), reason: e.to_string() })
                }
            }
        }
        let why = if self.credentials()?.is_some() {
            "the registry refused the stored credentials (isola login again)".to_string()
        } else {
            format!("the registry wants credentials: run `isola login {}`", self.r.registry)
        };
        Err(PullError::Auth(self.r.registry.clone(), why))
    }

    /// GET from `offset` on (Range), for resuming a download.
    fn get_range(&mut self, path: &str, offset: u64, what: &str) -> Result<ureq::Response, PullError> {
        let mut req = self.agent.get(&self.url(path)).set("Range", &format!("bytes={offset}-"));
        if let Some(a) = &self.auth {
            req = req.set("Authorization", a);
        }
        match req.call() {
            Ok(resp) => Ok(resp),
            // Whatever went wrong with the range, a plain GET decides.
            Err(_) => self.get(path, None, what),
        }
    }

    fn manifest_bytes(&mut self, object: &str) -> Result<Vec<u8>, PullError> {
        let resp = self.get(&format!("manifests/{object}"), Some(manifest::ACCEPT), &format!("manifest {object}"))?;
        let mut b = Vec::new();
        resp.into_reader()
            .take(4 << 20)
            .read_to_end(&mut b)
            .map_err(|e| PullError::Unreachable { registry: self.r.registry.clone(), reason: e.to_string() })?;
        Ok(b)
    }
}

/// Checks `creds` against `registry` (`isola login`): `/v2/` answers once its
/// challenge is met with them.
pub fn verify_login(registry: &str, creds: &crate::auth::Credentials) -> Result<(), PullError> {
    let r = Reference { registry: registry.into(), repository: String::new(), tag: None, digest: None };
    let mut s = Session::new(&r);
    let base = format!("{}://{}/v2/", r.scheme(), r.api_host());
    for attempt in 0..2 {
        let mut req = s.agent.get(&base);
        if let Some(a) = &s.auth {
            req = req.set("Authorization", a);
        }
        match req.call() {
            Ok(_) => return Ok(()),
            Err(ureq::Error::Status(401, resp)) if attempt == 0 => {
                let challenge = resp.header("www-authenticate").unwrap_or_default().to_string();
                s.answer(&challenge, Some(creds))?;
            }
            Err(ureq::Error::Status(status, _)) if status == 401 || status == 403 => break,
            Err(ureq::Error::Status(status, _)) => {
                return Err(PullError::Http { what: "/v2/".into(), status, body: String::new() })
            }
            Err(e) => return Err(PullError::Unreachable { registry: registry.into(), reason: e.to_string() }),
        }
    }
    Err(PullError::Auth(registry.into(), "the registry refused these credentials".into()))
}

/// What a pull reports as it goes: its steps, and each blob's bytes so far (from the
/// download threads, hence `Sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullEvent<'a> {
    Step(&'a str),
    Blob { digest: &'a str, have: u64, size: u64 },
}

/// How a pull reports ([`PullEvent`]).
pub type Progress<'a> = &'a (dyn Fn(PullEvent<'_>) + Sync);

/// One blob, resumed from a partial download with an HTTP Range request when the
/// registry honours it (206), restarted otherwise.
fn download(s: &mut Session<'_>, store: &Store, d: &str, size: u64, progress: Progress<'_>) -> Result<(), PullError> {
    let mut failure = None;
    let r = store.put_blob_resumable(
        d,
        Some(size),
        &mut |offset| {
            let what = format!("blob {d}");
            let resp = if offset > 0 {
                s.get_range(&format!("blobs/{d}"), offset, &what)
            } else {
                s.get(&format!("blobs/{d}"), None, &what)
            };
            match resp {
                Ok(resp) => {
                    let honoured = resp.status() == 206;
                    Ok((Box::new(resp.into_reader()) as Box<dyn Read>, honoured))
                }
                Err(e) => {
                    let msg = e.to_string();
                    failure = Some(e);
                    Err(StoreError::Source(msg))
                }
            }
        },
        &mut |have| progress(PullEvent::Blob { digest: d, have, size }),
    );
    match (r, failure) {
        (Ok(_), _) => Ok(()),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
    }
}

/// Pulls `r` into `store` and records it; `progress` hears each step and each blob's bytes.
pub fn pull(r: &Reference, store: &Store, progress: Progress<'_>) -> Result<ImageRecord, PullError> {
    pull_via(r, &[], store, progress)
}

/// [`pull`], from each of `mirrors` (registry hosts serving the same repositories) in
/// turn before `r`'s own registry; the image keeps `r`'s name. A mirror that cannot
/// serve it (unreachable, not there, refusing) is passed over and said.
pub fn pull_via(
    r: &Reference,
    mirrors: &[String],
    store: &Store,
    progress: Progress<'_>,
) -> Result<ImageRecord, PullError> {
    let name = r.to_string();
    for m in mirrors {
        let via = Reference { registry: m.clone(), ..r.clone() };
        progress(PullEvent::Step(&format!("trying mirror {m}")));
        match pull_named(&via, &name, store, progress) {
            Ok(rec) => return Ok(rec),
            Err(
                e @ (PullError::Unreachable { .. }
                | PullError::NotFound { .. }
                | PullError::Auth(..)
                | PullError::Http { .. }),
            ) => {
                progress(PullEvent::Step(&format!("mirror {m}: {e}")));
            }
            Err(e) => return Err(e),
        }
    }
    pull_named(r, &name, store, progress)
}

fn pull_named(r: &Reference, name: &str, store: &Store, progress: Progress<'_>) -> Result<ImageRecord, PullError> {
    let mut s = Session::new(r);
    let mut bytes = s.manifest_bytes(r.object())?;
    let mut digest = sha256_of(&bytes);
    if let Some(want) = &r.digest {
        if &digest != want {
            return Err(StoreError::DigestMismatch { expected: want.clone(), actual: digest }.into());
        }
    }
    let manifest: ImageManifest = match manifest::parse(&bytes)? {
        Fetched::Manifest(m) => *m,
        Fetched::Index(idx) => {
            let d = manifest::select(&idx)?;
            digest = d.digest().to_string();
            bytes = s.manifest_bytes(&digest)?;
            if sha256_of(&bytes) != digest {
                return Err(StoreError::DigestMismatch { expected: digest, actual: sha256_of(&bytes) }.into());
            }
            match manifest::parse(&bytes)? {
                Fetched::Manifest(m) => *m,
                Fetched::Index(_) => {
                    return Err(manifest::ManifestError::Malformed("an index inside an index".into()).into())
                }
            }
        }
    };
    manifest::declared_total(&manifest, store.max_unpacked())?;
    let blobs: Vec<(String, u64)> = std::iter::once(manifest.config())
        .chain(manifest.layers().iter())
        .map(|d| (d.digest().to_string(), d.size()))
        .collect();
    let missing: Vec<(String, u64)> = blobs.into_iter().filter(|(d, _)| !store.has_blob(d)).collect();
    // What this pull adds; a failed pull takes it out again (partial downloads stay,
    // at most their declared size, for the next pull to resume).
    let mut added: Vec<String> = missing.iter().map(|(d, _)| d.clone()).collect();
    if !store.has_blob(&digest) {
        added.push(digest.clone());
    }
    let result = fetch_and_commit(&mut s, store, name, (&digest, &bytes), &manifest, missing, progress);
    if result.is_err() {
        store.remove_unreferenced(&added);
    }
    result
}

/// The manifest (`digest`, `bytes`) and the `missing` blobs into the store, then the image.
fn fetch_and_commit(
    s: &mut Session<'_>,
    store: &Store,
    name: &str,
    (digest, bytes): (&str, &[u8]),
    manifest: &ImageManifest,
    missing: Vec<(String, u64)>,
    progress: Progress<'_>,
) -> Result<ImageRecord, PullError> {
    store.put_blob(digest, bytes)?;
    progress(PullEvent::Step(&format!("{} blob(s) to download", missing.len())));
    // Up to four downloads at once, each resumable; the first error wins.
    let queue = std::sync::Mutex::new(missing);
    let result: Result<(), PullError> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let mut sess = s.clone();
                let queue = &queue;
                scope.spawn(move || -> Result<(), PullError> {
                    loop {
                        let next = queue
                            .lock()
                            .map_err(|_| PullError::Worker("the download queue lock is poisoned".into()))?
                            .pop();
                        let Some((d, size)) = next else { return Ok(()) };
                        download(&mut sess, store, &d, size, progress)?;
                    }
                })
            })
            .collect();
        let mut first = Ok(());
        for w in workers {
            let r = w.join().unwrap_or_else(|_| Err(PullError::Worker("a download thread panicked".into())));
            if first.is_ok() {
                first = r;
            }
        }
        first
    });
    result?;
    progress(PullEvent::Step("unpacking"));
    Ok(store.commit(name, digest, manifest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_parsed() {
        let (realm, p) = www_authenticate_params(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .expect("challenge");
        assert_eq!(realm, "https://auth.docker.io/token");
        assert_eq!(p[0], ("service".to_string(), "registry.docker.io".to_string()));
        assert_eq!(p[1].1, "repository:library/busybox:pull");
        assert!(www_authenticate_params("Basic realm=x").is_none());
    }

    #[test]
    fn token_realms_must_be_https_or_loopback_http() {
        assert!(check_realm("https://auth.docker.io/token", "https").is_ok());
        assert!(check_realm("http://127.0.0.1:5000/token", "http").is_ok());
        assert!(check_realm("http://[::1]:5000/token", "http").is_ok());
        for (realm, reg) in [
            ("http://auth.example.com/token", "https"),
            ("http://127.0.0.1/token", "https"),
            ("http://169.254.169.254/latest/meta-data", "http"),
            ("http://localhost.evil.com/token", "http"),
            ("http://127.0.0.1@evil.com/token", "http"),
            ("file:///etc/shadow", "https"),
            ("gopher://x/", "https"),
            ("token", "https"),
        ] {
            assert!(check_realm(realm, reg).is_err(), "{realm} from a {reg} registry must be refused");
        }
    }
}
