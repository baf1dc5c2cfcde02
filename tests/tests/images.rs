//! Images end to end: a real registry (Debian's docker-registry on 127.0.0.1) fed by
//! skopeo from layouts built offline, pulled and imported by `isola`, run in microVMs.

use std::path::Path;

use isola_e2e::registry::{build_layout, Registry};
use isola_e2e::{isola, isola_env};

fn with_store(store: &Path) -> [(&'static str, &Path); 1] {
    [("ISOLA_IMAGE_DIR", store)]
}

#[test]
fn pulled_images_are_verified_unpacked_with_whiteouts_and_run() {
    let reg = Registry::start();
    let layout = tempfile::tempdir().expect("layout");
    build_layout(layout.path(), "v1", "hello from the image");
    reg.push(layout.path(), "v1", "test/busybox");
    let store = tempfile::tempdir().expect("store");
    let env = with_store(store.path());
    let reference = format!("{}/test/busybox:v1", reg.addr);

    let (out, err, code) = isola_env(&["pull", &reference], None, &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&reference) && out.contains("sha256:"), "{out}");
    let (out, _, _) = isola_env(&["images", "--json"], None, &env);
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    let rec = &list.as_array().expect("array")[0];
    assert_eq!(rec["name"], reference.as_str());
    assert_eq!(rec["layers"].as_array().expect("layers").len(), 2);
    let rootfs =
        store.path().join("rootfs").join(rec["manifest_digest"].as_str().expect("d").trim_start_matches("sha256:"));
    assert!(rootfs.join("bin/busybox").is_file());
    assert!(!rootfs.join("etc/gone").exists(), "the whiteout in layer 2 hides layer 1's file");

    // Run it: the image's Cmd, Env and WorkingDir apply; a user command replaces Cmd.
    let (out, err, code) = isola_env(&["run", "--name", "e2e-img", &reference], None, &env);
    assert_eq!((out.as_str(), code), ("hello from the image\nfrom-image-config\n", 0), "{err}");
    let (out, err, code) = isola_env(&["run", "--name", "e2e-img2", &reference, "sh", "-c", "pwd; exit 4"], None, &env);
    assert_eq!((out.as_str(), code), ("/tmp\n", 4), "{err}");
    // --entrypoint replaces the image's entrypoint and drops its Cmd, as with Docker.
    let args = ["run", "--name", "e2e-img3", "--entrypoint", "/bin/sh", &reference, "-c", "echo ep-$PWD; exit 6"];
    let (out, err, code) = isola_env(&args, None, &env);
    assert_eq!((out.as_str(), code), ("ep-/tmp\n", 6), "{err}");

    // A corrupted blob is refused and leaves no image behind.
    let layout2 = tempfile::tempdir().expect("layout2");
    build_layout(layout2.path(), "v2", "another motd");
    reg.push(layout2.path(), "v2", "test/busybox");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout2.path().join("index.json")).expect("index")).expect("json");
    let manifest_digest = index["manifests"][0]["digest"].as_str().expect("digest");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout2.path().join("blobs/sha256").join(manifest_digest.trim_start_matches("sha256:")))
            .expect("m"),
    )
    .expect("json");
    let motd_layer = manifest["layers"][1]["digest"].as_str().expect("layer");
    let f = reg.blob_file(motd_layer);
    let mut bytes = std::fs::read(&f).expect("stored layer");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&f, bytes).expect("corrupt");
    let bad_ref = format!("{}/test/busybox:v2", reg.addr);
    let blobs = || -> std::collections::BTreeSet<String> {
        walk(&store.path().join("blobs")).into_iter().filter(|p| !p.contains("partial")).collect()
    };
    let blobs_before = blobs();
    let (_, err, code) = isola_env(&["pull", &bad_ref], None, &env);
    assert_ne!(code, 0);
    assert!(err.contains("digest mismatch"), "{err}");
    let (out, _, _) = isola_env(&["images"], None, &env);
    assert!(!out.contains(":v2"), "no partial image: {out}");
    assert!(std::fs::read_dir(store.path().join("tmp")).expect("tmp").next().is_none(), "no partial files");
    assert_eq!(blobs(), blobs_before, "the failed pull took out the manifest and blobs it had added");

    // Errors a user meets are one clear line.
    let (_, err, code) = isola_env(&["pull", "127.0.0.1:1/nothing:here"], None, &env);
    assert_ne!(code, 0);
    assert!(err.contains("unreachable") && err.lines().count() == 1, "{err}");
    let (_, err, code) = isola_env(&["pull", "Not A Reference"], None, &env);
    assert_ne!(code, 0);
    assert!(err.contains("invalid image reference"), "{err}");
    let (_, err, code) = isola_env(&["pull", &format!("{}/test/missing:v1", reg.addr)], None, &env);
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");

    let (_, err, code) = isola_env(&["rmi", &reference], None, &env);
    assert_eq!(code, 0, "{err}");
    assert!(!rootfs.exists(), "the unpacked rootfs goes with the last image using it");
    let disks: Vec<_> = std::fs::read_dir(store.path().join("disks")).expect("disks").flatten().collect();
    assert!(disks.is_empty(), "its disk goes too: {disks:?}");
}

/// An image whose layers are zstd (`tar+zstd`, as `skopeo --dest-compress-format zstd`
/// pushes them) pulls, unpacks and runs like a gzip one.
#[test]
fn zstd_layers_pull_and_run() {
    let reg = Registry::start();
    let layout = tempfile::tempdir().expect("layout");
    build_layout(layout.path(), "z1", "hello from zstd");
    reg.push_zstd(layout.path(), "z1", "test/zstd");
    let manifest = reg.manifest("test/zstd", "z1");
    let types: Vec<&str> =
        manifest["layers"].as_array().expect("layers").iter().filter_map(|l| l["mediaType"].as_str()).collect();
    assert!(!types.is_empty() && types.iter().all(|t| t.ends_with("+zstd")), "zstd layers pushed: {types:?}");
    let store = tempfile::tempdir().expect("store");
    let env = with_store(store.path());
    let reference = format!("{}/test/zstd:z1", reg.addr);
    let (_, err, code) = isola_env(&["pull", &reference], None, &env);
    assert_eq!(code, 0, "{err}");
    let (out, err, code) = isola_env(&["run", "--name", "e2e-zstd", &reference], None, &env);
    assert_eq!((out.as_str(), code), ("hello from zstd\nfrom-image-config\n", 0), "{err}");
}

/// Pull progress: a bar per blob on a terminal (under `script`, a pty), a line per
/// quarter of each blob when piped, nothing with --quiet.
#[test]
fn pull_progress_is_bars_on_a_terminal_lines_when_piped_and_none_when_quiet() {
    let reg = Registry::start();
    let layout = tempfile::tempdir().expect("layout");
    build_layout(layout.path(), "p1", "progress");
    reg.push(layout.path(), "p1", "test/progress");
    let reference = format!("{}/test/progress:p1", reg.addr);
    let fresh = || tempfile::tempdir().expect("store");

    let store = fresh();
    let (_, err, code) = isola_env(&["pull", &reference], None, &with_store(store.path()));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("blob(s) to download") && err.contains("100% of"), "piped: lines\n{err}");
    assert!(!err.contains("ETA"), "no bar when piped: {err}");

    let store = fresh();
    let (_, err, code) = isola_env(&["pull", "--quiet", &reference], None, &with_store(store.path()));
    assert_eq!((err.as_str(), code), ("", 0), "quiet");

    let store = fresh();
    let bin = isola_e2e::require_binary("isola", "cargo build");
    let out = std::process::Command::new(isola_e2e::require_binary("script", "apt-get install bsdutils"))
        .args(["-qec", &format!("{} pull {reference}", bin.display()), "/dev/null"])
        .env("ISOLA_IMAGE_DIR", store.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains("ETA") && tty.contains('[') && !tty.contains("% of"), "a bar on a terminal:\n{tty}");
}

/// A registry that wants credentials: a pull without them fails saying so; a wrong
/// password does not log in; `isola login` (password on stdin, kept 0600) makes the
/// pull work; `logout` forgets; Docker's config.json `auths` work too.
#[test]
fn registry_credentials_come_from_login_or_dockers_config() {
    let reg = Registry::start_with_htpasswd("alice", "s3cret-pw");
    let layout = tempfile::tempdir().expect("layout");
    build_layout(layout.path(), "a1", "behind auth");
    reg.push(layout.path(), "a1", "test/private");
    let reference = format!("{}/test/private:a1", reg.addr);
    let home = tempfile::tempdir().expect("home");
    let auth_file = home.path().join("isola-auth.json");
    let docker = home.path().join("docker");
    std::fs::create_dir(&docker).expect("docker dir");
    let store = tempfile::tempdir().expect("store");
    let env = [
        ("ISOLA_IMAGE_DIR", store.path()),
        ("ISOLA_AUTH_FILE", auth_file.as_path()),
        ("DOCKER_CONFIG", docker.as_path()),
    ];

    let (_, err, code) = isola_env(&["pull", "-q", &reference], None, &env);
    assert_ne!(code, 0);
    assert!(err.contains("wants credentials") && err.contains(&format!("isola login {}", reg.addr)), "{err}");
    let (out, err, code) = isola_env(&["login", "-u", "alice", "--password-stdin", &reg.addr], Some("wrong\n"), &env);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("refused"), "{err}");
    assert!(!auth_file.exists(), "refused credentials are not kept");
    let (out, err, code) =
        isola_env(&["login", "-u", "alice", "--password-stdin", &reg.addr], Some("s3cret-pw\n"), &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Login Succeeded") && !out.contains("s3cret") && !err.contains("s3cret"), "{out}{err}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&auth_file).expect("auth file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials are kept 0600");
    let (_, err, code) = isola_env(&["pull", "-q", &reference], None, &env);
    assert_eq!(code, 0, "after login: {err}");
    let (out, _, code) = isola_env(&["logout", &reg.addr], None, &env);
    assert_eq!((out.contains("Removed"), code), (true, 0), "{out}");

    // Docker's config.json, with isola's own file empty.
    let auth = format!("{}:{}", "alice", "s3cret-pw");
    let b64 = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(auth.as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64");
    let config = serde_json::json!({"auths": {reg.addr.clone(): {"auth": String::from_utf8_lossy(&b64.stdout)}}});
    std::fs::write(docker.join("config.json"), config.to_string()).expect("docker config");
    let store2 = tempfile::tempdir().expect("store2");
    let env2 = [
        ("ISOLA_IMAGE_DIR", store2.path()),
        ("ISOLA_AUTH_FILE", auth_file.as_path()),
        ("DOCKER_CONFIG", docker.as_path()),
    ];
    let (_, err, code) = isola_env(&["pull", "-q", &reference], None, &env2);
    assert_eq!(code, 0, "with Docker's credentials: {err}");
    let (out, err, code) = isola_env(&["run", "--name", "e2e-auth", &reference], None, &env2);
    assert_eq!((out.as_str(), code), ("behind auth\nfrom-image-config\n", 0), "{err}");
}

/// `docker.io` through a mirror named in the host config: `isola pull busybox:TAG` and
/// `isola run busybox:TAG` resolve there (this host has no route to Docker Hub), and
/// the image keeps its docker.io name.
#[test]
fn docker_hub_images_resolve_through_a_configured_mirror() {
    let reg = Registry::start();
    let layout = tempfile::tempdir().expect("layout");
    build_layout(layout.path(), "mirrored", "from the mirror");
    reg.push(layout.path(), "mirrored", "library/busybox");
    let dir = tempfile::tempdir().expect("config dir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[registry_mirrors]\n\"docker.io\" = [\"127.0.0.1:1\", \"{}\"]\n", reg.addr))
        .expect("config");
    let store = tempfile::tempdir().expect("store");
    let env = [("ISOLA_IMAGE_DIR", store.path()), ("ISOLA_CONFIG", config.as_path())];
    let (out, err, code) = isola_env(&["pull", "busybox:mirrored"], None, &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("docker.io/library/busybox:mirrored "), "{out}");
    assert!(err.contains("mirror 127.0.0.1:1:"), "an unreachable mirror is passed over and said: {err}");
    let (out, err, code) = isola_env(&["run", "--name", "e2e-mirror", "busybox:mirrored"], None, &env);
    assert_eq!((out.as_str(), code), ("from the mirror\nfrom-image-config\n", 0), "{err}");
}

#[test]
fn docker_and_oci_archives_import() {
    let layout = tempfile::tempdir().expect("layout");
    build_layout(layout.path(), "v1", "imported");
    let store = tempfile::tempdir().expect("store");
    let env = with_store(store.path());
    let work = tempfile::tempdir().expect("work");
    let skopeo = isola_e2e::require_binary("skopeo", "apt-get install skopeo");
    for (kind, name) in [("docker-archive", "local/docker:1"), ("oci-archive", "local/oci:1")] {
        let file = work.path().join(format!("{kind}.tar"));
        let dest = if kind == "docker-archive" {
            format!("{kind}:{}:{name}", file.display())
        } else {
            format!("{kind}:{}", file.display())
        };
        let out = std::process::Command::new(&skopeo)
            .args(["copy", "--quiet", &format!("oci:{}:v1", layout.path().display()), &dest])
            .output()
            .expect("skopeo");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (out, err, code) = isola_env(&["import", file.to_str().expect("p"), "--name", name], None, &env);
        assert_eq!(code, 0, "{kind}: {err}");
        assert!(out.contains(name), "{out}");
    }
    let (out, err, code) =
        isola_env(&["import", layout.path().to_str().expect("p"), "--name", "local/layout:1"], None, &env);
    assert_eq!(code, 0, "{err}\n{out}");
    let (out, _, _) = isola_env(&["images"], None, &env);
    for n in ["local/docker:1", "local/oci:1", "local/layout:1"] {
        assert!(out.contains(n), "{n} in {out}");
    }
    let list: serde_json::Value = serde_json::from_str(&isola_env(&["images", "--json"], None, &env).0).expect("json");
    for rec in list.as_array().expect("array") {
        let root =
            store.path().join("rootfs").join(rec["manifest_digest"].as_str().expect("d").trim_start_matches("sha256:"));
        assert_eq!(std::fs::read_to_string(root.join("etc/motd")).expect("motd"), "imported\n", "{rec}");
        assert!(!root.join("etc/gone").exists());
    }
    let (_, err, code) = isola(&["import", "/nonexistent.tar", "--name", "x"], None);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent.tar"), "{err}");
}

/// Every file under `dir`, as paths relative to it.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.display().to_string());
            }
        }
    }
    out
}
