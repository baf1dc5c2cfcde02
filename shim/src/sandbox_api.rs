//! containerd's sandbox API (`containerd.runtime.sandbox.v1.Sandbox`, ttrpc) over the
//! pod's VM: with `sandboxer = "shim"` in containerd 2.x's CRI runtime config, the pod
//! is this VM, created without a pause container; its containers then arrive through
//! the task API on the same socket. Served next to task API v3 (`task_v3.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::types::platform::Platform;
use containerd_shim::{ExitSignal, TtrpcContext, TtrpcResult};
use containerd_shim_protos::sandbox_api as api;
use containerd_shim_protos::sandbox_sync::Sandbox;

use crate::error::{Rpc, TaskError};
use crate::events::timestamp;
use crate::pod_config;
use isola_task::pod::Pod;

/// The state names containerd's CRI uses for a pod sandbox.
pub const READY: &str = "SANDBOX_READY";
pub const NOT_READY: &str = "SANDBOX_NOTREADY";

/// Set by `start` on the serving shim: `ConfigPath` from containerd's runtime options,
/// for the VM CreateSandbox boots (that request does not carry them).
pub const CONFIG_ENV: &str = "ISOLA_SANDBOX_CONFIG";

pub struct SandboxService {
    pub pod: Arc<Pod>,
    pub exit: Arc<ExitSignal>,
}

impl Sandbox for SandboxService {
    fn create_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateSandboxRequest,
    ) -> TtrpcResult<api::CreateSandboxResponse> {
        let options = req.options.as_ref().map(|a| a.value.as_slice()).unwrap_or_default();
        let config = pod_config::parse(options).map_err(|e| TaskError::InvalidArgument(e.to_string())).rpc()?;
        let netns = Some(PathBuf::from(&req.netns_path)).filter(|p| !p.as_os_str().is_empty());
        self.pod.create_sandbox(&req.sandbox_id, &req.bundle_path, netns, &config).rpc()?;
        Ok(api::CreateSandboxResponse::default())
    }

    fn start_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartSandboxRequest,
    ) -> TtrpcResult<api::StartSandboxResponse> {
        let (pid, created_at) = self.pod.start_sandbox(&req.sandbox_id).rpc()?;
        Ok(api::StartSandboxResponse {
            pid,
            created_at: MessageField::some(timestamp(created_at)),
            ..Default::default()
        })
    }

    fn platform(&self, _ctx: &TtrpcContext, _req: api::PlatformRequest) -> TtrpcResult<api::PlatformResponse> {
        let platform = Platform { os: "linux".into(), architecture: "amd64".into(), ..Default::default() };
        Ok(api::PlatformResponse { platform: MessageField::some(platform), ..Default::default() })
    }

    fn stop_sandbox(&self, _ctx: &TtrpcContext, req: api::StopSandboxRequest) -> TtrpcResult<api::StopSandboxResponse> {
        self.pod.stop_sandbox(&req.sandbox_id).rpc()?;
        Ok(api::StopSandboxResponse::default())
    }

    fn wait_sandbox(&self, _ctx: &TtrpcContext, req: api::WaitSandboxRequest) -> TtrpcResult<api::WaitSandboxResponse> {
        let exit = self.pod.wait_sandbox(&req.sandbox_id).rpc()?;
        Ok(api::WaitSandboxResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    fn sandbox_status(
        &self,
        _ctx: &TtrpcContext,
        req: api::SandboxStatusRequest,
    ) -> TtrpcResult<api::SandboxStatusResponse> {
        let s = self.pod.sandbox_status(&req.sandbox_id).rpc()?;
        Ok(api::SandboxStatusResponse {
            sandbox_id: req.sandbox_id,
            pid: s.pid,
            state: if s.ready { READY } else { NOT_READY }.into(),
            created_at: MessageField::some(timestamp(s.created_at)),
            exited_at: s.exit.map(|e| timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    fn ping_sandbox(&self, _ctx: &TtrpcContext, req: api::PingRequest) -> TtrpcResult<api::PingResponse> {
        let s = self.pod.sandbox_status(&req.sandbox_id).rpc()?;
        if s.exit.is_some() {
            return Err(TaskError::FailedPrecondition(format!("sandbox {} has stopped", req.sandbox_id))).rpc();
        }
        Ok(api::PingResponse::default())
    }

    fn shutdown_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::ShutdownSandboxRequest,
    ) -> TtrpcResult<api::ShutdownSandboxResponse> {
        self.pod.stop_sandbox(&req.sandbox_id).rpc()?;
        // The shim's work is done once its VM is; tasks left are reported exited.
        self.exit.signal();
        Ok(api::ShutdownSandboxResponse::default())
    }

    fn sandbox_metrics(
        &self,
        _ctx: &TtrpcContext,
        req: api::SandboxMetricsRequest,
    ) -> TtrpcResult<api::SandboxMetricsResponse> {
        let stats = self.pod.sandbox_stats(&req.sandbox_id).rpc()?;
        let data = crate::metrics::to_any(&stats)
            .map_err(|e| TaskError::FailedPrecondition(format!("encoding the sandbox's metrics: {e}")))
            .rpc()?;
        let mut resp = api::SandboxMetricsResponse::default();
        let metric = resp.metrics.mut_or_insert_default();
        metric.timestamp = MessageField::some(timestamp(std::time::SystemTime::now()));
        metric.id = req.sandbox_id;
        metric.data = MessageField::some(data);
        Ok(resp)
    }
}
