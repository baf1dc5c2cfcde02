//! A real registry for the image tests (Debian's `docker-registry` on 127.0.0.1,
//! killed by PID when dropped) and OCI image layouts built offline from busybox.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub struct Registry {
    child: Child,
    pub addr: String,
    pub storage: PathBuf,
    /// `user:password` when the registry wants them (htpasswd, Basic auth).
    creds: Option<String>,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry that wants `user`/`password` (an htpasswd file, bcrypt, Basic auth).
    pub fn start_with_htpasswd(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Self {
        let bin = crate::require_binary("docker-registry", "apt-get install docker-registry");
        let dir = tempfile::tempdir().expect("registry dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some((user, password)) = auth {
            let htpasswd = crate::require_binary("htpasswd", "apt-get install apache2-utils");
            let out = Command::new(htpasswd).args(["-Bbn", user, password]).output().expect("htpasswd");
            assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).expect("htpasswd file");
            config += &format!("auth:\n  htpasswd:\n    realm: isola-test\n    path: {}\n", file.display());
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("config");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let creds = auth.map(|(u, p)| format!("{u}:{p}"));
        let r = Registry { child, addr, storage, creds, _dir: dir };
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&r.addr).is_err() {
            assert!(Instant::now() < until, "docker-registry did not listen on {}", r.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// Copies an OCI layout's `tag` into this registry as `repo:tag` (skopeo).
    pub fn push(&self, layout: &Path, tag: &str, repo: &str) {
        self.push_with(layout, tag, repo, &[]);
    }

    /// [`Registry::push`] with its layers recompressed as zstd (`tar+zstd`).
    pub fn push_zstd(&self, layout: &Path, tag: &str, repo: &str) {
        self.push_with(layout, tag, repo, &["--dest-compress", "--dest-compress-format", "zstd"]);
    }

    fn push_with(&self, layout: &Path, tag: &str, repo: &str, extra: &[&str]) {
        let creds: Vec<&str> = self.creds.as_deref().map(|c| vec!["--dest-creds", c]).unwrap_or_default();
        let out = Command::new(crate::require_binary("skopeo", "apt-get install skopeo"))
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(extra)
            .args(creds)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.addr))
            .output()
            .expect("skopeo");
        assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The manifest the registry serves for `repo:tag` (`skopeo inspect --raw`).
    pub fn manifest(&self, repo: &str, tag: &str) -> serde_json::Value {
        let out = Command::new(crate::require_binary("skopeo", "apt-get install skopeo"))
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{repo}:{tag}", self.addr))
            .output()
            .expect("skopeo");
        assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("manifest json")
    }

    /// Stored blob file for `digest` in the registry's filesystem storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>())
}

fn entry(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, data: &[u8], mode: u32, link: Option<&str>) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    if let Some(l) = link {
        h.set_link_name(l).expect("link");
    }
    b.append_data(&mut h, path, data).expect("entry");
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// An OCI layout with tag `tag`: layer 1 has busybox, `sh` and `/etc/gone`; layer 2
/// whites out `/etc/gone` and adds `/etc/motd` containing `motd`. The config runs
/// `sh -c 'cat /etc/motd; echo $GREETING'` with GREETING=from-image-config.
pub fn build_layout(dir: &Path, tag: &str, motd: &str) {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static (apt-get install busybox-static)");
    let mut l1 = tar::Builder::new(Vec::new());
    for d in ["bin", "etc", "tmp"] {
        entry(&mut l1, d, tar::EntryType::Directory, b"", 0o755, None);
    }
    entry(&mut l1, "bin/busybox", tar::EntryType::Regular, &busybox, 0o755, None);
    for app in ["sh", "cat", "echo", "ls", "id", "true"] {
        entry(&mut l1, &format!("bin/{app}"), tar::EntryType::Symlink, b"", 0o777, Some("busybox"));
    }
    entry(&mut l1, "etc/gone", tar::EntryType::Regular, b"whiteout me", 0o644, None);
    let l1 = gz(&l1.into_inner().expect("tar"));
    let mut l2 = tar::Builder::new(Vec::new());
    entry(&mut l2, "etc/.wh.gone", tar::EntryType::Regular, b"", 0o644, None);
    entry(&mut l2, "etc/motd", tar::EntryType::Regular, format!("{motd}\n").as_bytes(), 0o644, None);
    let l2 = gz(&l2.into_inner().expect("tar"));
    let diff = |gzipped: &[u8]| {
        let mut d = flate2::read::GzDecoder::new(gzipped);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut raw).expect("gunzip");
        sha256(&raw)
    };
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh", "-c", "cat /etc/motd; echo $GREETING"], "Env": ["PATH=/bin", "GREETING=from-image-config"], "WorkingDir": "/tmp"},
        "rootfs": {"type": "layers", "diff_ids": [diff(&l1), diff(&l2)]}
    })
    .to_string()
    .into_bytes();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let put = |b: &[u8]| {
        let d = sha256(b);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), b).expect("blob");
        (d, b.len())
    };
    let (cd, cs) = put(&config);
    let (l1d, l1s) = put(&l1);
    let (l2d, l2s) = put(&l2);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l1d, "size": l1s},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l2d, "size": l2s}
        ]
    })
    .to_string()
    .into_bytes();
    let (md, ms) = put(&manifest);
    let index_path = dir.join("index.json");
    let mut manifests: Vec<serde_json::Value> = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["manifests"].as_array().cloned())
        .unwrap_or_default();
    manifests.push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": tag}
    }));
    std::fs::write(&index_path, serde_json::json!({"schemaVersion": 2, "manifests": manifests}).to_string())
        .expect("index");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
}
