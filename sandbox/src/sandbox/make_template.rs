//! Making a template: a sandbox booted like the caller's, snapshotted once its agent
//! answers, before it has any identity, and stopped.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Sandbox, SandboxError};
use crate::options::{DiskAttach, NetworkMode, SandboxOptions, TemplateUse};
use crate::state::{self, Creator};
use crate::template::{self, io, Template, TemplateError, TemplateMeta};

#[derive(Debug, thiserror::Error)]
pub enum MakeError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("booting the template's guest: {0}")]
    Boot(#[from] SandboxError),
    #[error("snapshotting the template's guest: {0}")]
    Snapshot(String),
    #[error("template {0} is being made by another process")]
    Busy(String),
}

/// Makes the template for `opts`' configuration under `root`: boots a guest like
/// theirs (under the pool's state root, with no identity of theirs), snapshots it
/// once its agent answers, and stops it. The directory is staged under a name that
/// records this process and takes the key's name only when complete; if another maker
/// got there first, theirs is kept and returned.
pub fn make_template(opts: &SandboxOptions, root: &Path) -> Result<Template, MakeError> {
    let key = opts.template_key()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(io(format!("creating {}", root.display())))?;
    if template::being_made(root, &key) {
        return Err(MakeError::Busy(key));
    }
    let staged = state::staging_dir(root, &key, Creator::me());
    std::fs::DirBuilder::new().mode(0o700).create(&staged).map_err(io(format!("creating {}", staged.display())))?;
    let meta = match snapshot_into(opts, &key, &staged) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(e);
        }
    };
    let text = serde_json::to_vec_pretty(&meta).map_err(|e| io("writing template.json")(e.into()))?;
    let placed =
        std::fs::write(staged.join(template::META), text).and_then(|()| state::take_name(&staged, &root.join(&key)));
    if let Err(e) = placed {
        let _ = std::fs::remove_dir_all(&staged);
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(io(format!("placing template {key}"))(e).into());
        }
    }
    Ok(template::find(root, &key).ok_or(TemplateError::NotFound(key))?)
}

/// [`make_template`], but a template another process is making is waited for (up to
/// `wait`) rather than refused as busy; if that maker ends without one, this one
/// makes it.
pub fn make_template_waiting(opts: &SandboxOptions, root: &Path, wait: Duration) -> Result<Template, MakeError> {
    for _ in 0..3 {
        match make_template(opts, root) {
            Err(MakeError::Busy(key)) => {
                if let Some(t) = template::wait_for_maker(root, &key, wait) {
                    return Ok(t);
                }
            }
            other => return other,
        }
    }
    make_template(opts, root)
}

fn snapshot_into(opts: &SandboxOptions, key: &str, staged: &Path) -> Result<TemplateMeta, MakeError> {
    let devices = opts.template_devices();
    let mut o = opts.clone();
    o.id = format!("template-{key}-{}", crate::names::random_hex(3));
    o.state_root = state::pool_root(&opts.state_root);
    o.template = TemplateUse::Make(staged.join("snapshot"));
    o.tie_to_parent = true;
    o.hostname = None;
    o.sysctls = vec![];
    o.netns = None;
    o.cgroup_path = None;
    o.network = if devices.net { NetworkMode::Bridge } else { NetworkMode::None };
    // Disks are each clone's own: the template holds their slots empty.
    o.disks = (0..opts.disks.len()).map(DiskAttach::placeholder).collect();
    let started = Instant::now();
    let mut sb = Sandbox::start(&o)?;
    let boot = started.elapsed();
    let answer = sb.control("snapshot", Duration::from_secs(120)).map_err(MakeError::Snapshot)?;
    sb.stop();
    Ok(TemplateMeta {
        key: key.into(),
        kernel: opts.boot.kernel.clone(),
        initrd: opts.boot.initrd.clone(),
        cmdline: opts.boot.cmdline.clone(),
        mem_mib: opts.boot.mem_mib,
        vcpus: opts.boot.vcpus,
        devices,
        created_unix: state::now_unix(),
        boot_ms: u64::try_from(boot.as_millis()).unwrap_or(u64::MAX),
        snapshot: answer,
    })
}
