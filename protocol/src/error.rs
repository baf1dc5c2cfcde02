//! Errors that cross the VM boundary: a code the host can act on, and a message for people.

/// What went wrong, as the host's logic sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be parsed or was not valid in this protocol version.
    BadRequest,
    /// Ids, paths or values that the agent refuses (e.g. a path escaping the rootfs).
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// The container or process is not in a state that allows this.
    FailedPrecondition,
    /// A system call failed inside the guest.
    Os,
    /// The process could not be executed (not found, not executable).
    Exec,
    /// Anything else.
    Internal,
}

/// An error reply.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct AgentError {
    pub code: ErrorCode,
    pub message: String,
}

impl AgentError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}
