//! How the task engine's errors reach containerd: as a ttrpc status whose code
//! containerd maps to its own error kinds (NotFound, AlreadyExists, FailedPrecondition…).

use containerd_shim::protos::ttrpc::{self, Code};
use isola_protocol::client::ClientError;
use isola_protocol::ErrorCode;
pub use isola_task::error::{io, TaskError};

/// The ttrpc code containerd reads for `e`.
pub fn code(e: &TaskError) -> Code {
    match e {
        TaskError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
        TaskError::NotFound(_) => Code::NOT_FOUND,
        TaskError::AlreadyExists(_) => Code::ALREADY_EXISTS,
        TaskError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
        TaskError::Unimplemented(_) => Code::UNIMPLEMENTED,
        // The agent's codes cross the VM boundary typed; keep their meaning.
        TaskError::Agent(ClientError::Agent(e)) => match e.code {
            ErrorCode::NotFound => Code::NOT_FOUND,
            ErrorCode::AlreadyExists => Code::ALREADY_EXISTS,
            ErrorCode::InvalidArgument | ErrorCode::BadRequest => Code::INVALID_ARGUMENT,
            ErrorCode::FailedPrecondition => Code::FAILED_PRECONDITION,
            ErrorCode::Os | ErrorCode::Exec | ErrorCode::Internal => Code::UNKNOWN,
        },
        TaskError::Agent(ClientError::Timeout(_)) => Code::DEADLINE_EXCEEDED,
        TaskError::Agent(_) | TaskError::Sandbox(_) => Code::UNAVAILABLE,
        TaskError::Mount(_) | TaskError::Io { .. } | TaskError::Config(_) => Code::INTERNAL,
    }
}

/// `e` as the status a ttrpc method returns.
pub fn status(e: TaskError) -> ttrpc::Error {
    log::warn!("{e}");
    ttrpc::Error::RpcStatus(ttrpc::get_status(code(&e), e.to_string()))
}

/// `result.rpc()?` in a ttrpc method: the task engine's error as its status.
pub trait Rpc<T> {
    fn rpc(self) -> ttrpc::Result<T>;
}

impl<T> Rpc<T> for Result<T, TaskError> {
    fn rpc(self) -> ttrpc::Result<T> {
        self.map_err(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isola_protocol::AgentError;

    #[test]
    fn errors_become_the_status_codes_containerd_expects() {
        let cases: Vec<(TaskError, Code)> = vec![
            (TaskError::NotFound("task c1".into()), Code::NOT_FOUND),
            (TaskError::AlreadyExists("task c1".into()), Code::ALREADY_EXISTS),
            (TaskError::InvalidArgument("bad id".into()), Code::INVALID_ARGUMENT),
            (TaskError::Unimplemented("checkpoint"), Code::UNIMPLEMENTED),
            (ClientError::Agent(AgentError::new(ErrorCode::NotFound, "no container x")).into(), Code::NOT_FOUND),
            (
                ClientError::Agent(AgentError::new(ErrorCode::FailedPrecondition, "not running")).into(),
                Code::FAILED_PRECONDITION,
            ),
            (ClientError::Timeout(std::time::Duration::from_secs(1)).into(), Code::DEADLINE_EXCEEDED),
        ];
        for (e, code) in cases {
            let msg = e.to_string();
            match status(e) {
                ttrpc::Error::RpcStatus(s) => {
                    assert_eq!(s.code(), code, "{msg}");
                    assert_eq!(s.message(), msg);
                }
                other => panic!("not a status: {other:?}"),
            }
        }
    }
}
