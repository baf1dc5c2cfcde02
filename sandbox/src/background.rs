//! Work a program hands to a detached copy of itself (the reaper of a foreground run,
//! a pool refill, a template warm-up, the port forwarder, the template maker, a task's
//! host stand-in, isola-runtime's keeper and relays): one entry and one argument
//! format for all of them, `PROGRAM __isola NAME JSON`, each job a typed value.

use std::ffi::OsString;
use std::process::Command;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first argument of every background entry.
pub const ARG: &str = "__isola";

/// The most JSON a job's argument may hold (a job is a few hundred bytes).
pub const MAX_JOB_BYTES: usize = 64 << 10;

/// A job a binary can run in the background.
pub trait Job: Serialize + DeserializeOwned {
    /// Its name on the command line, unique among a binary's jobs.
    const NAME: &'static str;
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("background job {name}: no argument")]
    Missing { name: &'static str },
    #[error("background job {name}: its argument is {len} bytes, over {MAX_JOB_BYTES}")]
    TooBig { name: &'static str, len: usize },
    #[error("background job {name}: {source}")]
    Json { name: &'static str, source: serde_json::Error },
}

/// The arguments that start `job` (after the program, or its argv[0]).
pub fn args<J: Job>(job: &J) -> Vec<OsString> {
    // A job is plain data (strings, numbers, paths as UTF-8): it always encodes.
    let json = serde_json::to_string(job).unwrap_or_default();
    vec![ARG.into(), J::NAME.into(), json.into()]
}

/// `program __isola NAME JSON`.
pub fn command<J: Job>(program: impl AsRef<std::ffi::OsStr>, job: &J) -> Command {
    let mut c = Command::new(program);
    c.args(args(job));
    c
}

/// The job `args` (a whole argv, program first) asks this process for, if it is a `J`.
pub fn parse<J: Job>(args: &[String]) -> Option<Result<J, JobError>> {
    if args.get(1).map(String::as_str) != Some(ARG) || args.get(2).map(String::as_str) != Some(J::NAME) {
        return None;
    }
    let name = J::NAME;
    let Some(json) = args.get(3) else { return Some(Err(JobError::Missing { name })) };
    if json.len() > MAX_JOB_BYTES {
        return Some(Err(JobError::TooBig { name, len: json.len() }));
    }
    Some(serde_json::from_str(json).map_err(|source| JobError::Json { name, source }))
}

/// [`parse`] of this process's own arguments.
pub fn from_env<J: Job>() -> Option<Result<J, JobError>> {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    parse(&args)
}

/// A job's exit code: 0, or 1 with `what` and the error on stderr.
pub fn exit_code<E: std::fmt::Display>(what: &str, r: Result<(), E>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{what}: {e:#}");
            1
        }
    }
}

/// Runs `run` when this process was started for a `J`, and exits with its code; a bad
/// argument is reported on stderr and exits 2. Returns when this is not a `J`.
pub fn run_if<J: Job>(run: impl FnOnce(J) -> i32) {
    match from_env::<J>() {
        None => {}
        Some(Ok(job)) => std::process::exit(run(job)),
        Some(Err(e)) => {
            eprintln!("{e}");
            std::process::exit(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    struct Reap {
        name: String,
        dir: std::path::PathBuf,
    }
    impl Job for Reap {
        const NAME: &'static str = "reap";
    }

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    struct Other {}
    impl Job for Other {
        const NAME: &'static str = "other";
    }

    fn argv<J: Job>(j: &J) -> Vec<String> {
        std::iter::once("isola".to_string())
            .chain(args(j).into_iter().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    }

    #[test]
    fn a_job_comes_back_as_it_went_and_only_to_its_own_name() {
        let j = Reap { name: "web 1".into(), dir: "/run/isola".into() };
        let a = argv(&j);
        assert_eq!(&a[1..3], ["__isola", "reap"]);
        assert_eq!(parse::<Reap>(&a).expect("a reap job").expect("parses"), j);
        assert!(parse::<Other>(&a).is_none(), "another job's name");
        assert!(parse::<Reap>(&["isola".into(), "run".into()]).is_none(), "a normal command line");
    }

    #[test]
    fn bad_arguments_are_named_errors() {
        let a = |rest: &[&str]| -> Vec<String> {
            ["isola", ARG, "reap"].iter().chain(rest).map(|s| s.to_string()).collect()
        };
        assert!(matches!(parse::<Reap>(&a(&[])), Some(Err(JobError::Missing { .. }))));
        assert!(matches!(parse::<Reap>(&a(&["{\"name\": 3}"])), Some(Err(JobError::Json { .. }))));
        let big = "x".repeat(MAX_JOB_BYTES + 1);
        assert!(matches!(parse::<Reap>(&a(&[&big])), Some(Err(JobError::TooBig { .. }))));
    }
}
