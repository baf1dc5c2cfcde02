//! ps, list, events, update, features, spec: what callers ask of containers.

use std::path::Path;
use std::time::Duration;

use isola_protocol::ContainerStats;

use crate::cli::UpdateArgs;
use crate::control::{self, Request};
use crate::error::{io, RuntimeError};
use crate::globals::Globals;
use crate::state::{self, Dir};

fn running(g: &Globals, id: &str) -> Result<Dir, RuntimeError> {
    let dir = Dir::new(&g.root, id)?;
    let r = dir.load()?;
    if !r.keeper_alive() {
        return Err(RuntimeError::Invalid("container not running".into()));
    }
    Ok(dir)
}

pub fn ps(g: &Globals, id: &str, format: &str, ps_args: &[String]) -> Result<(), RuntimeError> {
    let dir = Dir::new(&g.root, id)?;
    let r = dir.load()?;
    let pids: Vec<i32> = if r.keeper_alive() {
        serde_json::from_value(control::call(&dir.socket(), id, &Request::Pids)?).unwrap_or_default()
    } else {
        vec![]
    };
    if format == "json" {
        println!("{}", serde_json::to_string(&pids).unwrap_or_default());
        return Ok(());
    }
    if format != "table" {
        return Err(RuntimeError::Invalid(format!("invalid format option {format:?}")));
    }
    // As runc: the host's `ps` (its arguments passed on), only this container's rows.
    let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
    let out = std::process::Command::new("ps").args(&args).output().map_err(io("running", Path::new("ps")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header.split_whitespace().position(|h| h == "PID").unwrap_or(1);
    println!("{header}");
    for l in lines {
        if l.split_whitespace().nth(col).and_then(|p| p.parse::<i32>().ok()).is_some_and(|p| pids.contains(&p)) {
            println!("{l}");
        }
    }
    Ok(())
}

pub fn list(g: &Globals, format: &str, quiet: bool) -> Result<(), RuntimeError> {
    let all = state::list(&g.root);
    if quiet {
        for (_, r) in &all {
            println!("{}", r.id);
        }
        return Ok(());
    }
    match format {
        "json" => {
            let v: Vec<serde_json::Value> = all.iter().map(|(_, r)| r.oci_state()).collect();
            println!("{}", serde_json::to_string(&v).unwrap_or_default());
        }
        "table" => {
            let rows: Vec<[String; 6]> = all
                .iter()
                .map(|(_, r)| {
                    let s = r.oci_state();
                    [
                        r.id.clone(),
                        s["pid"].to_string(),
                        r.live_status(),
                        r.bundle.display().to_string(),
                        r.created.clone(),
                        String::new(),
                    ]
                })
                .collect();
            print!("{}", table(&["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], &rows));
        }
        other => return Err(RuntimeError::Invalid(format!("invalid format option {other:?}"))),
    }
    Ok(())
}

/// Columns padded as Go's tabwriter (minwidth 12, padding 1) pads runc's.
fn table(header: &[&str; 6], rows: &[[String; 6]]) -> String {
    let mut w = header.map(|h| h.len().max(12));
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len() + 1);
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}", width = w[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A guest's stats as runc's `events --stats` prints them (libcontainer's types).
pub fn runc_stats(id: &str, s: &ContainerStats) -> serde_json::Value {
    serde_json::json!({
        "type": "stats",
        "id": id,
        "data": {
            "cpu": {
                "usage": {
                    "total": s.cpu_usage_usec * 1000,
                    "kernel": s.cpu_system_usec * 1000,
                    "user": s.cpu_user_usec * 1000,
                },
                "throttling": {}
            },
            "memory": {
                "usage": { "usage": s.memory_current, "limit": s.memory_max.unwrap_or(u64::MAX), "max": 0, "failcnt": 0 },
                "swap": { "usage": 0, "limit": 0 },
                "kernel": {}, "kernelTCP": {},
                "raw": { "oom_kill": s.memory_oom_kills },
            },
            "pids": { "current": s.pids_current, "limit": s.pids_max.unwrap_or(0) },
            "blkio": {
                "ioServiceBytesRecursive": [
                    { "major": 0, "minor": 0, "op": "Read", "value": s.io_read_bytes },
                    { "major": 0, "minor": 0, "op": "Write", "value": s.io_write_bytes },
                ]
            },
            "hugetlb": {},
            "intel_rdt": {},
        }
    })
}

fn parse_interval(s: &str) -> Result<Duration, RuntimeError> {
    let bad = || RuntimeError::Invalid(format!("--interval {s:?}: use e.g. 500ms, 5s or 1m"));
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

pub fn events(g: &Globals, id: &str, once: bool, interval: &str) -> Result<(), RuntimeError> {
    let every = parse_interval(interval)?;
    let dir = running(g, id)?;
    loop {
        let v = control::call(&dir.socket(), id, &Request::Stats)?;
        let s: ContainerStats = serde_json::from_value(v).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        println!("{}", runc_stats(id, &s));
        if once {
            return Ok(());
        }
        std::thread::sleep(every);
        if !dir.load()?.keeper_alive() {
            return Ok(());
        }
    }
}

/// Bytes as runc's --memory takes them: a number with an optional k/m/g suffix.
fn parse_bytes(s: &str) -> Result<i64, RuntimeError> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| RuntimeError::Invalid(format!("invalid size {s:?}")))
}

/// The LinuxResources to apply: the file (or stdin) as given, or the flags.
pub fn resources(a: &UpdateArgs) -> Result<serde_json::Value, RuntimeError> {
    if let Some(p) = &a.resources {
        let r: oci_spec::runtime::LinuxResources = crate::input::read_json(p)?;
        return serde_json::to_value(r).map_err(|e| RuntimeError::Invalid(e.to_string()));
    }
    let mut v = serde_json::json!({});
    if let Some(m) = &a.memory {
        v["memory"]["limit"] = parse_bytes(m)?.into();
    }
    if let Some(m) = &a.memory_swap {
        v["memory"]["swap"] = parse_bytes(m)?.into();
    }
    if let Some(q) = a.cpu_quota {
        v["cpu"]["quota"] = q.into();
    }
    if let Some(p) = a.cpu_period {
        v["cpu"]["period"] = p.into();
    }
    if let Some(s) = a.cpu_share {
        v["cpu"]["shares"] = s.into();
    }
    if let Some(c) = &a.cpuset_cpus {
        v["cpu"]["cpus"] = c.clone().into();
    }
    if let Some(p) = a.pids_limit {
        v["pids"]["limit"] = p.into();
    }
    Ok(v)
}

pub fn update(g: &Globals, a: &UpdateArgs) -> Result<(), RuntimeError> {
    let res = resources(a)?;
    let dir = running(g, &a.id)?;
    control::call(&dir.socket(), &a.id, &Request::Update { resources: res }).map(|_| ())
}

pub fn features() -> Result<(), RuntimeError> {
    let f = isola_sandbox::features::oci_features();
    println!("{}", serde_json::to_string_pretty(&f).map_err(|e| RuntimeError::Invalid(e.to_string()))?);
    Ok(())
}

pub fn spec(bundle: &Path, rootless: bool) -> Result<(), RuntimeError> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(RuntimeError::Invalid("File config.json exists. Remove it first.".into()));
    }
    let s = if rootless {
        oci_spec::runtime::Spec::rootless(nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
    } else {
        oci_spec::runtime::Spec::default()
    };
    s.save(&path).map_err(|e| RuntimeError::Spec { path: path.clone(), why: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_use_libcontainers_field_names_and_units() {
        let s = ContainerStats { cpu_usage_usec: 5, memory_current: 4096, pids_current: 3, ..Default::default() };
        let v = runc_stats("c1", &s);
        assert_eq!(v["type"], "stats");
        assert_eq!(v["data"]["cpu"]["usage"]["total"], 5000, "nanoseconds");
        assert_eq!(v["data"]["memory"]["usage"]["usage"], 4096);
        assert_eq!(v["data"]["pids"]["current"], 3);
    }

    #[test]
    fn update_flags_become_linux_resources() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "isola-runtime",
            "update",
            "--memory",
            "64m",
            "--cpu-quota",
            "50000",
            "--pids-limit",
            "10",
            "c1",
        ])
        .expect("parses");
        let Some(crate::cli::Cmd::Update(a)) = cli.cmd else { panic!("not update") };
        let v = resources(&a).expect("resources");
        assert_eq!(v["memory"]["limit"], 64 << 20);
        assert_eq!(v["cpu"]["quota"], 50000);
        assert_eq!(v["pids"]["limit"], 10);
        let _: oci_spec::runtime::LinuxResources = serde_json::from_value(v).expect("a valid LinuxResources");
        assert!(parse_bytes("12x").is_err() && parse_bytes("").is_err());
    }

    #[test]
    fn list_table_lines_up_as_runcs() {
        let rows = vec![["c1".to_string(), "42".into(), "running".into(), "/b".into(), "t".into(), String::new()]];
        let t = table(&["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID          PID         STATUS"), "{t}");
        assert_eq!(lines[1].find("42"), lines[0].find("PID"));
        assert!(parse_interval("0s").is_err() && parse_interval("5x").is_err());
        assert_eq!(parse_interval("500ms").expect("ms"), Duration::from_millis(500));
    }
}
