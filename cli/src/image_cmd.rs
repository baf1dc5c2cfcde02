//! `isola pull / images / rmi / import`, and resolving `isola run IMAGE`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use isola_image::{ImageRecord, Reference, Store};

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image reference, e.g. busybox, 127.0.0.1:5000/test/busybox:v1.
    reference: String,
    /// No progress output.
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Images to remove.
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// An OCI image layout directory, an oci-archive or a docker-archive (`docker save`).
    path: PathBuf,
    /// Name to give the image.
    #[arg(long)]
    name: String,
}

/// The mirrors the host config names for `r`'s registry.
fn mirrors(r: &Reference) -> anyhow::Result<Vec<String>> {
    let mut c = isola_sandbox::config::Config::load()?;
    Ok(c.registry_mirrors.remove(&r.registry).unwrap_or_default())
}

pub fn store() -> anyhow::Result<Store> {
    let root = Store::default_root();
    Store::open(&root).with_context(|| format!("opening the image store {}", root.display()))
}

pub fn pull(a: PullArgs) -> anyhow::Result<ExitCode> {
    let r: Reference = a.reference.parse()?;
    let ui = crate::progress::PullUi::new(&r.to_string(), a.quiet);
    let s = store()?;
    let rec = isola_image::registry::pull_via(&r, &mirrors(&r)?, &s, &|e| ui.event(e))?;
    image_disk(&s, &rec)?;
    println!("{} {}", rec.name, rec.manifest_digest);
    Ok(ExitCode::SUCCESS)
}

/// The image's disk (its root filesystem as an erofs image, built once), or None where
/// this host cannot build one (no mkfs.erofs): its sandboxes then share the unpacked
/// directory over virtio-fs. A hostile image (too many files, too large) is an error.
pub fn image_disk(s: &Store, rec: &ImageRecord) -> anyhow::Result<Option<isola_image::ImageDisk>> {
    match s.ensure_disk(rec) {
        Ok(d) => Ok(Some(d)),
        Err(isola_image::DiskError::NoMkfs(e)) => {
            eprintln!("isola: warning: no {} ({e}): {} is shared over virtio-fs", isola_image::disk::MKFS, rec.name);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn images(a: ImagesArgs) -> anyhow::Result<ExitCode> {
    let list = store()?.list();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<50} {:<19} {:>10}", "IMAGE", "DIGEST", "SIZE");
    for r in &list {
        let short = r.manifest_digest.trim_start_matches("sha256:").get(..12).unwrap_or_default();
        println!("{:<50} sha256:{short} {:>9.1}M", r.name, r.size as f64 / 1048576.0);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(a: RmiArgs) -> anyhow::Result<ExitCode> {
    let s = store()?;
    for i in &a.images {
        let r = s.remove(i)?;
        println!("removed {}", r.name);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let name = a.name.parse::<Reference>().map(|r| r.to_string()).unwrap_or(a.name.clone());
    let s = store()?;
    let rec = isola_image::import::import(&a.path, &name, &s)?;
    image_disk(&s, &rec)?;
    println!("{} {}", rec.name, rec.manifest_digest);
    Ok(ExitCode::SUCCESS)
}

/// The image for `isola run IMAGE`: from the store, pulled first when missing.
pub fn resolve(image: &str) -> anyhow::Result<(Store, ImageRecord)> {
    let s = store()?;
    if let Ok(rec) = s.find(image) {
        return Ok((s, rec));
    }
    let r: Reference = image.parse()?;
    eprintln!("isola: {r} is not in the store; pulling");
    let ui = crate::progress::PullUi::new(&r.to_string(), false);
    let rec = isola_image::registry::pull_via(&r, &mirrors(&r)?, &s, &|e| ui.event(e))?;
    Ok((s, rec))
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry host (and port), e.g. registry.example.com or 127.0.0.1:5000.
    registry: String,
    #[arg(short = 'u', long)]
    username: String,
    /// Read the password from stdin (always the case: never on the command line).
    #[arg(long)]
    password_stdin: bool,
}

/// Checks the credentials against the registry, then keeps them (0600) for pulls.
pub fn login(a: LoginArgs) -> anyhow::Result<ExitCode> {
    use std::io::BufRead;
    let _ = a.password_stdin;
    let mut password = String::new();
    std::io::stdin().lock().take(4096).read_line(&mut password).context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(!password.is_empty(), "no password on stdin (echo PASSWORD | isola login -u USER REGISTRY)");
    let creds = isola_image::auth::Credentials { username: a.username, password };
    isola_image::registry::verify_login(&a.registry, &creds)?;
    isola_image::auth::store(&a.registry, Some(&creds))?;
    println!("Login Succeeded ({}; credentials in {})", a.registry, isola_image::auth::isola_file().display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    registry: String,
}

pub fn logout(a: LogoutArgs) -> anyhow::Result<ExitCode> {
    if isola_image::auth::store(&a.registry, None)? {
        println!("Removed the credentials for {}", a.registry);
    } else {
        println!("Not logged in to {}", a.registry);
    }
    Ok(ExitCode::SUCCESS)
}
