//! `isola template warm|ls|rm`: the isola-vmm snapshots `isola run` and the shim
//! restore instead of booting (see `isola_sandbox::template`). `isola run` makes the
//! one it lacks in the background, in a detached copy of this binary (a `WarmJob`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use isola_sandbox::sandbox::{make_template, make_template_waiting, MakeError};
use isola_sandbox::template;

use crate::pool_cmd::PoolConfig;

#[derive(Subcommand, Debug)]
pub enum TemplateCmd {
    /// Make the template for this configuration (as `isola run` takes it), unless
    /// there is one: boot, snapshot once the agent answers, stop.
    Warm(WarmArgs),
    /// List the templates.
    Ls,
    /// Remove templates by key (see `ls`), or all of them.
    Rm(RmArgs),
}

#[derive(Args, Debug)]
pub struct WarmArgs {
    /// Make it again even if there is one.
    #[arg(long)]
    force: bool,
    /// For `isola run IMAGE` with the image on a disk (the default): an empty disk
    /// slot each clone fills with its image, and no virtio-fs, so clones map the
    /// template's memory copy-on-write.
    #[arg(long)]
    image_disk: bool,
    #[command(flatten)]
    config: PoolConfig,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    keys: Vec<String>,
    #[arg(long, conflicts_with = "keys")]
    all: bool,
    /// Those no run would restore any more (isola-vmm, kernel or initramfs changed).
    #[arg(long, conflicts_with_all = ["keys", "all"])]
    stale: bool,
}

pub fn run(cmd: TemplateCmd) -> anyhow::Result<ExitCode> {
    let root = template::root();
    match cmd {
        TemplateCmd::Warm(a) => warm(&a.config, a.image_disk, a.force, false).map(|()| ExitCode::SUCCESS),
        TemplateCmd::Ls => {
            println!(
                "{:<17} {:>7} {:>5} {:<9} {:>9} {:>8} {:>7}",
                "KEY", "MEMORY", "VCPUS", "DEVICES", "DISK", "BOOT", "AGE"
            );
            for t in template::list(&root) {
                let m = &t.meta;
                let mut devices: Vec<String> = [("fs", m.devices.fs), ("net", m.devices.net)]
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(n, _)| n.to_string())
                    .collect();
                if m.devices.disks > 0 {
                    devices.push(format!("disk{}", m.devices.disks));
                }
                let devices = if devices.is_empty() { "-".to_string() } else { devices.join(",") };
                let age = isola_sandbox::state::now_unix().saturating_sub(m.created_unix);
                let stale = if t.stale() { " (stale: isola-vmm or the guest changed)" } else { "" };
                println!(
                    "{:<17} {:>6}M {:>5} {:<9} {:>8}M {:>6}ms {:>6}s{stale}",
                    m.key,
                    m.mem_mib,
                    m.vcpus,
                    devices,
                    t.disk_bytes() >> 20,
                    m.boot_ms,
                    age
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TemplateCmd::Rm(a) => {
            let keys: Vec<String> = if a.all || a.stale {
                template::list(&root).into_iter().filter(|t| a.all || t.stale()).map(|t| t.meta.key).collect()
            } else {
                a.keys
            };
            let mut code = ExitCode::SUCCESS;
            for k in keys {
                match template::remove(&root, &k) {
                    Ok(()) => println!("{k}"),
                    Err(e) => {
                        eprintln!("isola: error: {e}");
                        code = ExitCode::from(1);
                    }
                }
            }
            Ok(code)
        }
    }
}

/// A run found no template for its configuration: a detached `isola template warm`
/// makes one, so the next run restores instead of booting.
/// Makes the template for `c` unless there is one (`force`: again). In the background
/// (for a run that had none) it says nothing and leaves it to a maker already at it.
fn warm(c: &PoolConfig, image_disk: bool, force: bool, background: bool) -> anyhow::Result<()> {
    let root = template::root();
    let slots = usize::from(image_disk);
    let (opts, _) = crate::pool_cmd::options_with_disks(c, "", isola_sandbox::state::default_root(), slots)?;
    let key = opts.template_key()?;
    if let Some(t) = template::find(&root, &key) {
        if !force {
            if !background {
                println!("{key} (made already, {})", t.dir.display());
            }
            return Ok(());
        }
        template::remove(&root, &key)?;
    }
    // In the foreground, a template another process is making is waited for (as long
    // as a boot may take, twice), not refused.
    let made = if background {
        make_template(&opts, &root)
    } else {
        make_template_waiting(&opts, &root, opts.boot.timeout * 2)
    };
    match made {
        Ok(t) => {
            if !background {
                println!("{key} ({} ms to boot; {})", t.meta.boot_ms, t.meta.snapshot);
            }
            Ok(())
        }
        Err(MakeError::Busy(_)) if background => Ok(()),
        Err(e) => Err(e).with_context(|| format!("making template {key}")),
    }
}

/// A template made in the background for a run that had none.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WarmJob {
    config: PoolConfig,
    #[serde(default)]
    image_disk: bool,
}

impl isola_sandbox::background::Job for WarmJob {
    const NAME: &'static str = "template-warm";
}

pub fn warm_job(j: WarmJob) -> i32 {
    isola_sandbox::background::exit_code("isola: making a template", warm(&j.config, j.image_disk, false, true))
}

/// Makes the template for `c` (with a disk slot for the image when `image_disk`) in a
/// detached process.
pub fn warm_in_background(c: &PoolConfig, image_disk: bool) {
    if let Err(e) = crate::pool_cmd::spawn_detached(&WarmJob { config: c.clone(), image_disk }) {
        eprintln!("isola: warning: no template is made for the next run ({e})");
    }
}
