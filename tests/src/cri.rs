//! kubelet's side of CRI, for the pod tests: a client on containerd's socket, a pod
//! and its containers' configs, and ExecSync.

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::containerd::{Containerd, IMAGE};

pub async fn client(c: &Containerd) -> RuntimeServiceClient<Channel> {
    let sock = c.sock.clone();
    let channel = Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?)) }
        }))
        .await
        .expect("connect to containerd's CRI");
    RuntimeServiceClient::new(channel)
}

pub fn pod_config(logs: &std::path::Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "pod1".into(),
            uid: "uid-pod1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "pod1".into(),
        log_directory: logs.display().to_string(),
        dns_config: Some(DnsConfig {
            servers: vec!["10.10.10.10".into()],
            searches: vec!["pod.example".into()],
            options: vec![],
        }),
        linux: Some(LinuxPodSandboxConfig {
            // A namespaced pod sysctl (IPC, shared by the pod's containers).
            sysctls: [("kernel.shm_rmid_forced".to_string(), "1".to_string())].into(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_config(name: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(ImageSpec { image: IMAGE.into(), ..Default::default() }),
        command: vec!["sh".into(), "-c".into(), format!("echo started-{name}; while true; do busybox sleep 1; done")],
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

pub async fn exec(rt: &mut RuntimeServiceClient<Channel>, id: &str, cmd: &str) -> (String, i32) {
    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), cmd.into()],
            timeout: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("exec {cmd:?} in {id}: {e}"))
        .into_inner();
    (String::from_utf8_lossy(&r.stdout).into_owned(), r.exit_code)
}

/// Creates and starts one container per name in the pod (CreateContainer, StartContainer),
/// panicking with containerd's log on a failure; their ids, in order.
pub async fn start_containers(
    rt: &mut RuntimeServiceClient<Channel>,
    c: &Containerd,
    sandbox: &str,
    pod: &PodSandboxConfig,
    names: &[&str],
) -> Vec<String> {
    let mut ids = Vec::new();
    for name in names {
        let id = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(container_config(name)),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}\n{}", c.log()))
            .into_inner()
            .container_id;
        rt.start_container(StartContainerRequest { container_id: id.clone() })
            .await
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e}\n{}", c.log()));
        ids.push(id);
    }
    ids
}
