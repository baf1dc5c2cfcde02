//! The command line, as runc spells it (the flags containerd's runc shim, conmon and
//! podman pass; the ones that do not apply to a VM are accepted and ignored).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "isola-runtime",
    disable_version_flag = true,
    about = "runc-compatible OCI runtime: every container in its own microVM"
)]
pub struct Cli {
    /// Where container state is kept.
    #[arg(long, global = true, default_value = crate::state::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Where to write messages (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub log_format: String,
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted; the VM's cgroup follows cgroupsPath in either form.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted and ignored (runc's checkpoint tool).
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// A process.json (`-` for stdin) instead of the command and flags.
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(long)]
    pub cwd: Option<String>,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(short = 'c', long = "cap")]
    pub cap: Vec<String>,
    #[arg(long = "process-label", hide = true)]
    pub process_label: Option<String>,
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    #[arg(long, hide = true)]
    pub cgroup: Vec<String>,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// A LinuxResources JSON file (`-` for stdin).
    #[arg(short = 'r', long)]
    pub resources: Option<PathBuf>,
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create a container (its microVM boots; the process waits for `start`).
    Create(CreateArgs),
    /// Create and start a container, and wait for it (unless --detach).
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short = 'd', long)]
        detach: bool,
        #[arg(long)]
        keep: bool,
    },
    /// Start a created container's process.
    Start {
        id: String,
    },
    /// The container's OCI state (JSON).
    State {
        id: String,
    },
    /// Send a signal (name or number; default SIGTERM) to the container's process.
    Kill {
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Remove a container (with --force, a running one too).
    Delete {
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// The container's host processes (the ones callers wait on).
    Ps {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Change the container's resource limits.
    Update(UpdateArgs),
    /// The container's stats (`--stats` once, else every --interval).
    Events {
        #[arg(long)]
        stats: bool,
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Every container under --root.
    List {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// What this runtime supports (OCI features JSON).
    Features,
    /// Write a starter config.json.
    Spec {
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Cli {
        Cli::try_parse_from(line.split_whitespace()).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn containerd_runc_shim_command_lines_parse() {
        // go-runc's forms, as containerd-shim-runc-v2 (Docker's and ctr's) runs them.
        let root = "--root /run/docker/runtime-runc/moby --log /b/log.json --log-format json";
        let c = parse(&format!(
            "isola-runtime {root} create --bundle /b --pid-file /b/init.pid --console-socket /tmp/pty.sock c1"
        ));
        assert_eq!((c.root.to_str(), c.log_format.as_str()), (Some("/run/docker/runtime-runc/moby"), "json"));
        let Some(Cmd::Create(a)) = c.cmd else { panic!("create") };
        assert_eq!((a.id.as_str(), a.bundle.to_str(), a.console_socket.is_some()), ("c1", Some("/b"), true));
        let c = parse(&format!("isola-runtime {root} exec --process /tmp/p.json --detach --pid-file /b/e.pid c1"));
        let Some(Cmd::Exec(a)) = c.cmd else { panic!("exec") };
        assert!(a.detach && a.process.is_some() && a.command.is_empty());
        let c = parse(&format!("isola-runtime {root} kill --all c1 9"));
        assert!(matches!(c.cmd, Some(Cmd::Kill { all: true, ref id, signal: Some(ref s) }) if id == "c1" && s == "9"));
        assert!(matches!(parse("isola-runtime delete --force c1").cmd, Some(Cmd::Delete { force: true, .. })));
        assert!(
            matches!(parse("isola-runtime ps --format json c1").cmd, Some(Cmd::Ps { ref format, .. }) if format == "json")
        );
        assert!(matches!(parse("isola-runtime update --resources - c1").cmd, Some(Cmd::Update(_))));
        assert!(matches!(parse("isola-runtime events --stats c1").cmd, Some(Cmd::Events { stats: true, .. })));
        assert!(matches!(parse("isola-runtime --systemd-cgroup --debug state c1").cmd, Some(Cmd::State { .. })));
    }

    #[test]
    fn conmon_and_podman_command_lines_parse() {
        let c = parse(
            "isola-runtime --root=/run/isola-runtime create --bundle /u --pid-file /u/pidfile --no-new-keyring c2",
        );
        assert!(matches!(c.cmd, Some(Cmd::Create(ref a)) if a.no_new_keyring && a.id == "c2"));
        let c = parse("isola-runtime exec --pid-file /u/e --process /u/p --detach --tty --console-socket /u/s c2");
        assert!(matches!(c.cmd, Some(Cmd::Exec(ref a)) if a.tty && a.detach && a.console_socket.is_some()));
        // A command's own flags are its own, not ours.
        let c = parse("isola-runtime exec -e A=1 c2 ls -la --color");
        let Some(Cmd::Exec(a)) = c.cmd else { panic!("exec") };
        assert_eq!(a.command, ["ls", "-la", "--color"]);
        assert!(parse("isola-runtime --version").version);
        assert!(Cli::try_parse_from(["isola-runtime", "create"]).is_err(), "an id is required");
    }
}
