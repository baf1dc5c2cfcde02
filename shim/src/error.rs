//! The shim's errors, and how each reaches containerd: as a ttrpc status whose code
//! containerd maps to its own error kinds (NotFound, AlreadyExists, FailedPrecondition…).

use containerd_shim::protos::ttrpc::{self, Code};
use isola_protocol::client::ClientError;
use isola_protocol::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
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

impl From<isola_sandbox::ContainerError> for ShimError {
    fn from(e: isola_sandbox::ContainerError) -> Self {
        use isola_sandbox::ContainerError as C;
        match e {
            C::Agent(e) => ShimError::Agent(e),
            C::Mount(e) => ShimError::Mount(e),
            C::Stream(what, source) => ShimError::Io { what: format!("streams of {what}"), source },
            C::NoSharedFs => ShimError::FailedPrecondition("the VM has no shared directory (virtiofsd)".into()),
            other => ShimError::InvalidArgument(other.to_string()),
        }
    }
}

pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
    let what = what.into();
    move |source| ShimError::Io { what, source }
}

impl ShimError {
    pub fn code(&self) -> Code {
        match self {
            ShimError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
            // The agent's codes cross the VM boundary typed; keep their meaning.
            ShimError::Agent(ClientError::Agent(e)) => match e.code {
                ErrorCode::NotFound => Code::NOT_FOUND,
                ErrorCode::AlreadyExists => Code::ALREADY_EXISTS,
                ErrorCode::InvalidArgument | ErrorCode::BadRequest => Code::INVALID_ARGUMENT,
                ErrorCode::FailedPrecondition => Code::FAILED_PRECONDITION,
                ErrorCode::Os | ErrorCode::Exec | ErrorCode::Internal => Code::UNKNOWN,
            },
            ShimError::Agent(ClientError::Timeout(_)) => Code::DEADLINE_EXCEEDED,
            ShimError::Agent(_) | ShimError::Sandbox(_) => Code::UNAVAILABLE,
            ShimError::Mount(_) | ShimError::Io { .. } | ShimError::Config(_) => Code::INTERNAL,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        log::warn!("{e}");
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isola_protocol::AgentError;

    #[test]
    fn errors_become_the_status_codes_containerd_expects() {
        let cases: Vec<(ShimError, Code)> = vec![
            (ShimError::NotFound("task c1".into()), Code::NOT_FOUND),
            (ShimError::AlreadyExists("task c1".into()), Code::ALREADY_EXISTS),
            (ShimError::InvalidArgument("bad id".into()), Code::INVALID_ARGUMENT),
            (ShimError::Unimplemented("checkpoint"), Code::UNIMPLEMENTED),
            (ClientError::Agent(AgentError::new(ErrorCode::NotFound, "no container x")).into(), Code::NOT_FOUND),
            (
                ClientError::Agent(AgentError::new(ErrorCode::FailedPrecondition, "not running")).into(),
                Code::FAILED_PRECONDITION,
            ),
            (ClientError::Timeout(std::time::Duration::from_secs(1)).into(), Code::DEADLINE_EXCEEDED),
        ];
        for (e, code) in cases {
            let msg = e.to_string();
            match ttrpc::Error::from(e) {
                ttrpc::Error::RpcStatus(s) => {
                    assert_eq!(s.code(), code, "{msg}");
                    assert_eq!(s.message(), msg);
                }
                other => panic!("not a status: {other:?}"),
            }
        }
    }
}
