//! The template a pod's configuration lacked, made by a detached copy of this binary
//! (`__make-template`): the shim of a short task is gone long before a template is
//! made, and a template is the next pod's, not this one's.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use isola_sandbox::sandbox::{make_template, MakeError, NetworkMode};

use crate::boot_request::{self, host, BootRequest};

/// The argument that makes the shim binary a template maker.
pub const ARG: &str = "__make-template";

/// Starts a maker for `r`'s configuration, as the shim boots it.
pub fn spawn(r: &BootRequest) {
    let Ok(exe) = std::env::current_exe() else { return };
    let mut c = Command::new(exe);
    c.arg(ARG);
    if let Some(m) = r.memory_mib {
        c.args(["--memory-mib", &m.to_string()]);
    }
    if let Some(v) = r.vcpus {
        c.args(["--vcpus", &v.to_string()]);
    }
    if r.netns.is_some() {
        c.arg("--net");
    }
    if let Some(p) = &r.config_path {
        c.arg("--config").arg(p);
    }
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    match c.spawn() {
        // Reaped here while the shim lives; it outlives a shim that ends first.
        Ok(mut child) => drop(std::thread::spawn(move || child.wait())),
        Err(e) => log::warn!("no template is made for the next pod: {e}"),
    }
}

/// What a maker is asked on its command line.
fn request(args: &[String]) -> Result<(BootRequest, bool), String> {
    let mut r = BootRequest {
        name: "template".into(),
        hostname: "template".into(),
        netns: None,
        memory_mib: None,
        vcpus: None,
        config_path: None,
        cgroup_path: None,
        sysctls: vec![],
    };
    let mut net = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--memory-mib" => r.memory_mib = Some(value()?.parse().map_err(|_| "--memory-mib takes MiB")?),
            "--vcpus" => r.vcpus = Some(value()?.parse().map_err(|_| "--vcpus takes a count")?),
            "--config" => r.config_path = Some(PathBuf::from(value()?)),
            "--net" => net = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((r, net))
}

/// `__make-template [--memory-mib N] [--vcpus N] [--net] [--config PATH]`.
pub fn serve(args: &[String]) -> ! {
    let made = request(args).and_then(|(r, net)| {
        let mut req = boot_request::request(&r, true);
        // A pod's interface: the template has the net device it will restore onto.
        if net {
            req.network = NetworkMode::Bridge;
        }
        // Made, not restored from another.
        req.templates = false;
        let opts = host(&r).map_err(|e| e.to_string())?.place(&req).options;
        match make_template(&opts, &isola_sandbox::template::root()) {
            Ok(_) | Err(MakeError::Busy(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    });
    if let Err(e) = made {
        eprintln!("{ARG}: {e}");
        std::process::exit(1);
    }
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_makers_command_line_is_read_back_and_bad_ones_are_refused() {
        let a: Vec<String> =
            ["--memory-mib", "512", "--vcpus", "2", "--net", "--config", "/c.toml"].map(String::from).to_vec();
        let (r, net) = request(&a).expect("ok");
        assert_eq!((r.memory_mib, r.vcpus, net), (Some(512), Some(2), true));
        assert_eq!(r.config_path, Some(PathBuf::from("/c.toml")));
        for bad in [&["--vcpus"][..], &["--vcpus", "x"], &["--what"]] {
            let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(request(&bad).is_err(), "{bad:?}");
        }
    }
}
