//! The task engine's errors. Each kind is one containerd and runc users tell apart
//! (not found, exists, bad argument, wrong state…); the adapters map them to their own
//! codes (the shim to ttrpc statuses, isola-runtime to messages and exit codes).

use isola_protocol::client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0} is not supported by isola")]
    Unimplemented(&'static str),
    #[error("guest agent: {0}")]
    Agent(#[from] ClientError),
    #[error("sandbox: {0}")]
    Sandbox(#[from] isola_sandbox::sandbox::SandboxError),
    #[error("rootfs: {0}")]
    Mount(#[from] isola_sandbox::mounts::MountError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Config(String),
}

impl From<isola_sandbox::ContainerError> for TaskError {
    fn from(e: isola_sandbox::ContainerError) -> Self {
        use isola_sandbox::ContainerError as C;
        match e {
            C::Agent(e) => TaskError::Agent(e),
            C::Mount(e) => TaskError::Mount(e),
            C::Stream(what, source) => TaskError::Io { what: format!("streams of {what}"), source },
            C::NoSharedFs => TaskError::FailedPrecondition("the VM has no shared directory (virtiofsd)".into()),
            other => TaskError::InvalidArgument(other.to_string()),
        }
    }
}

pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TaskError {
    let what = what.into();
    move |source| TaskError::Io { what, source }
}
