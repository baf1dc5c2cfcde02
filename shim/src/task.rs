//! containerd's Task service (ttrpc) over the pod's tasks.

use std::sync::Arc;

use containerd_shim::api;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::types::task::{ProcessInfo, Status as TaskStatus};
use containerd_shim::{ExitSignal, TtrpcContext, TtrpcResult};

use crate::error::{Rpc, TaskError};
use isola_task::pod::{CreateRequest, Pod, Status};
use isola_task::rootfs::RootMount;
use isola_task::stdio::StdioPaths;

pub struct TaskService {
    pub pod: Arc<Pod>,
    pub exit: Arc<ExitSignal>,
}

fn status(s: Status) -> TaskStatus {
    match s {
        Status::Created => TaskStatus::CREATED,
        Status::Running => TaskStatus::RUNNING,
        Status::Paused => TaskStatus::PAUSED,
        Status::Stopped => TaskStatus::STOPPED,
    }
}

/// containerd sends processes and resources as JSON in an `Any`.
fn json<T: serde::de::DeserializeOwned>(
    what: &str,
    any: &MessageField<containerd_shim::protos::protobuf::well_known_types::any::Any>,
) -> Result<T, TaskError> {
    let any = any.as_ref().ok_or_else(|| TaskError::InvalidArgument(format!("no {what} given")))?;
    serde_json::from_slice(&any.value).map_err(|e| TaskError::InvalidArgument(format!("{what}: {e}")))
}

impl containerd_shim::Task for TaskService {
    fn create(&self, _ctx: &TtrpcContext, req: api::CreateTaskRequest) -> TtrpcResult<api::CreateTaskResponse> {
        if !req.checkpoint.is_empty() {
            return Err(crate::error::status(TaskError::Unimplemented("restoring from a checkpoint")));
        }
        let r = CreateRequest {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req
                .rootfs
                .iter()
                .map(|m| RootMount { typ: m.type_.clone(), source: m.source.clone(), options: m.options.clone() })
                .collect(),
            stdio: StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            config_path: crate::runtime_options::config_path(req.options.as_ref()),
        };
        let pid = self.pod.create(r).rpc()?;
        Ok(api::CreateTaskResponse { pid, ..Default::default() })
    }

    fn start(&self, _ctx: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        let pid = self.pod.start(&req.id, &req.exec_id).rpc()?;
        Ok(api::StartResponse { pid, ..Default::default() })
    }

    fn delete(&self, _ctx: &TtrpcContext, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        let (pid, exit) = self.pod.delete(&req.id, &req.exec_id).rpc()?;
        Ok(api::DeleteResponse {
            pid,
            exit_status: exit.code,
            exited_at: Some(crate::events::timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let processes =
            self.pod.pids(&req.id).rpc()?.into_iter().map(|pid| ProcessInfo { pid, ..Default::default() }).collect();
        Ok(api::PidsResponse { processes, ..Default::default() })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.pod.pause(&req.id, true).rpc()?;
        Ok(api::Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        self.pod.pause(&req.id, false).rpc()?;
        Ok(api::Empty::new())
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, _req: api::CheckpointTaskRequest) -> TtrpcResult<api::Empty> {
        Err(crate::error::status(TaskError::Unimplemented("checkpoint")))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        self.pod.kill(&req.id, &req.exec_id, req.signal, req.all).rpc()?;
        Ok(api::Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        let process = json("exec process spec", &req.spec).rpc()?;
        let stdio = StdioPaths { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal };
        self.pod.exec(&req.id, &req.exec_id, process, stdio).rpc()?;
        Ok(api::Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<api::Empty> {
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        self.pod.resize(&req.id, &req.exec_id, clamp(req.width), clamp(req.height)).rpc()?;
        Ok(api::Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        // The stdin bridge sends EOF to the guest once containerd's writer has closed the
        // FIFO and everything written was copied; closing earlier could drop input.
        log::debug!("close io {} {}", req.id, req.exec_id);
        Ok(api::Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        let resources = json("resources", &req.resources).rpc()?;
        self.pod.update(&req.id, resources).rpc()?;
        Ok(api::Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let exit = self.pod.wait(&req.id, &req.exec_id).rpc()?;
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: Some(crate::events::timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    fn stats(&self, _ctx: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        let stats = self.pod.stats(&req.id).rpc()?;
        let any =
            crate::metrics::to_any(&stats).map_err(|e| TaskError::Config(format!("encoding metrics: {e}"))).rpc()?;
        Ok(api::StatsResponse { stats: Some(any).into(), ..Default::default() })
    }

    fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        let (bundle, pid, st, stdio, exit) = self.pod.state(&req.id, &req.exec_id).rpc()?;
        Ok(api::StateResponse {
            id: req.id,
            exec_id: req.exec_id,
            bundle,
            pid,
            status: status(st).into(),
            stdin: stdio.stdin,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
            terminal: stdio.terminal,
            exit_status: exit.as_ref().map(|e| e.code).unwrap_or(0),
            exited_at: exit.map(|e| crate::events::timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: api::ConnectRequest) -> TtrpcResult<api::ConnectResponse> {
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: self.pod.task_pid(&req.id),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        // One shim serves the whole pod: it stays while any task does.
        if self.pod.is_empty() {
            self.pod.shutdown();
            self.exit.signal();
        }
        Ok(api::Empty::new())
    }
}
