//! What a runtime command can fail with; the text is what callers (containerd's runc
//! shim, conmon) show, so it reads like runc's where they parse it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error("invalid container id {0:?}: {1}")]
    BadId(String, String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the bundle's config.json at {}: {why}", path.display())]
    Spec { path: PathBuf, why: String },
    #[error("cannot {verb} container {id} that is {status}")]
    WrongState { verb: &'static str, id: String, status: String },
    #[error("cannot delete container {0} that is not stopped: {1}")]
    NotStopped(String, String),
    #[error("the container's keeper process: {0}")]
    Keeper(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the console socket {}: {why}", path.display())]
    Console { path: PathBuf, why: String },
    #[error("hook {0}: {1}")]
    Hook(String, String),
    #[error(transparent)]
    Task(#[from] isola_task::error::TaskError),
}

pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.into();
    move |source| RuntimeError::Io { what, path, source }
}
