//! Image references: `[registry[:port]/]repository[:tag][@sha256:digest]`, with Docker
//! Hub's defaults (`docker.io`, `library/`, `latest`).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    #[error("invalid image reference {0:?}: {1}")]
    Invalid(String, &'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

pub const DOCKER_HUB: &str = "docker.io";

impl Reference {
    /// Where the registry API lives (Docker Hub's API host differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// Loopback registries speak plain HTTP; everything else HTTPS.
    pub fn scheme(&self) -> &'static str {
        let host = self.registry.rsplit_once(':').map_or(self.registry.as_str(), |(h, _)| h);
        if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
            "http"
        } else {
            "https"
        }
    }

    /// The tag or digest to ask the registry for.
    pub fn object(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_alphanumeric()
}

impl std::str::FromStr for Reference {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, RefError> {
        let bad = |why| RefError::Invalid(s.into(), why);
        if s.is_empty() || s.len() > 512 || s.chars().any(char::is_whitespace) {
            return Err(bad("empty, too long or containing spaces"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d.strip_prefix("sha256:").ok_or(bad("digest must be sha256:<64 hex>"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                    return Err(bad("digest must be sha256:<64 hex>"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad("bad tag"));
            }
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let registry = if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
            parts.remove(0).to_string()
        } else {
            DOCKER_HUB.to_string()
        };
        if parts.iter().any(|c| !valid_component(c)) {
            return Err(bad("repository components are lowercase letters, digits and ._-"));
        }
        if registry == DOCKER_HUB && parts.len() == 1 {
            parts.insert(0, "library");
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".into()) } else { tag };
        Ok(Reference { registry, repository: parts.join("/"), tag, digest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn docker_hub_defaults_and_explicit_registries() {
        assert_eq!(r("busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r("user/app:1.2").to_string(), "docker.io/user/app:1.2");
        let l = r("127.0.0.1:5000/test/busybox:v1");
        assert_eq!((l.registry.as_str(), l.repository.as_str(), l.object()), ("127.0.0.1:5000", "test/busybox", "v1"));
        assert_eq!(l.scheme(), "http");
        assert_eq!(r("ghcr.io/o/r").scheme(), "https");
        assert_eq!(r("busybox").api_host(), "registry-1.docker.io");
        let d = format!("localhost:5000/x@sha256:{}", "a".repeat(64));
        let p = r(&d);
        assert_eq!((p.tag.as_deref(), p.object()), (None, format!("sha256:{}", "a".repeat(64)).as_str()));
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        for (s, why) in [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("busybox:", "bad tag"),
            ("busybox@sha256:abc", "digest"),
            ("a b", "spaces"),
            ("x/../y", "lowercase"),
        ] {
            let e = s.parse::<Reference>().expect_err(s).to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
