//! What can go wrong in a benchmark run, with its source kept.

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Sandbox(#[from] isola_sandbox::sandbox::SandboxError),
    #[error(transparent)]
    Container(#[from] isola_sandbox::ContainerError),
    #[error(transparent)]
    Agent(#[from] isola_sandbox::ClientError),
    #[error(transparent)]
    Hypervisor(#[from] isola_sandbox::hypervisor::HypervisorError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what}: {source}")]
    Json { what: String, source: serde_json::Error },
    #[error("{0}")]
    Failed(String),
}

/// Wraps an I/O error with what was being done.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}
