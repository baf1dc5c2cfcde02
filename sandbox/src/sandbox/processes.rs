//! The sandbox's host processes, one backend program each: the VMM (isola-vmm or
//! QEMU), virtiofsd, the vhost-user vsock daemon and QEMU's console pump, each in the
//! sandbox's cgroup, recorded in its state as soon as it is spawned.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{io, tail, Sandbox, SandboxError, SandboxOptions, CONSOLE_MAX_BYTES, VSOCK_DIR};
use crate::backend::{console, helper_filter, isola_vmm, qemu, unprivileged, vhost_vsock, virtiofsd};
use crate::names::guest_cid;

fn filter_err(e: helper_filter::HelperFilterError) -> SandboxError {
    io("the helpers' seccomp filter")(std::io::Error::other(e.to_string()))
}

fn tie_to_parent(cmd: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A process the sandbox started: what it is, where it logs, and whether it is the VMM
/// (kept together, so the VMM is found by what it is, not by where it was pushed).
pub(super) struct Supervised {
    pub child: Child,
    pub what: String,
    /// Its log file in the sandbox's directory ("" for none).
    pub log: String,
    pub vmm: bool,
}

impl Sandbox {
    pub(super) fn supervise(&mut self, child: Child, what: &str, log: &str, vmm: bool) {
        self.children.push(Supervised { child, what: what.to_string(), log: log.to_string(), vmm });
    }

    /// The VMM, once started by this handle.
    pub(super) fn vmm_child(&mut self) -> Option<&mut Child> {
        self.children.iter_mut().find(|s| s.vmm).map(|s| &mut s.child)
    }

    /// isola-vmm serves the hybrid-vsock socket itself: no helper process.
    /// Restored from the snapshot in `from` when given, else booted.
    pub(super) fn start_isola_vmm(&mut self, opts: &SandboxOptions, from: Option<&Path>) -> Result<(), SandboxError> {
        let fs_socket = self.start_virtiofsd(opts)?;
        let console = self.dir.join("console.log");
        let net = self.state.net.clone();
        let devices = isola_vmm::SandboxDevices {
            vsock_uds: &self.state.vsock_uds,
            cid: guest_cid(&self.id),
            console: &console,
            fs_socket: fs_socket.as_deref(),
            tap: net.as_ref().map(|n| (n.tap.as_str(), n.mac.as_str())),
            uid: self.state.host_uid(),
            disks: &opts.disks,
            balloon: opts.balloon,
        };
        let mut c = match from {
            Some(snapshot) => isola_vmm::restore_command(snapshot, &devices)?,
            None => isola_vmm::sandbox_command(&opts.boot, &devices)?,
        };
        // The control API: a template's snapshot, and the balloon's target (resize).
        match &opts.template {
            crate::options::TemplateUse::Make(to) => {
                isola_vmm::snapshot_flags(&mut c, &self.dir.join(super::API_SOCK), to)
            }
            _ if opts.balloon => isola_vmm::api_flag(&mut c, &self.dir.join(super::API_SOCK)),
            _ => {}
        }
        c.stdout(Stdio::null());
        self.spawn_vmm(c, opts, isola_vmm::EXE, None)?;
        self.connect_tap()
    }

    /// Starts the VMM (last of the sandbox's processes) and records it; `filter`, when
    /// given, is installed last before exec (after the pod's setns, which it refuses).
    fn spawn_vmm(
        &mut self,
        mut c: Command,
        opts: &SandboxOptions,
        what: &str,
        filter: Option<helper_filter::For>,
    ) -> Result<(), SandboxError> {
        c.stdin(Stdio::null());
        c.stderr(crate::files::create_private(&self.dir.join("vmm.log")).map_err(io("vmm log"))?);
        if let Some(pod) = self.state.net.as_ref().and_then(|n| n.pod.as_ref()) {
            crate::netns::enter_before_exec(&mut c, &pod.netns)?;
        }
        self.confine_spawn(&mut c, opts);
        if let Some(who) = filter {
            helper_filter::install_before_exec(&mut c, who).map_err(filter_err)?;
        }
        self.spawned = Some(Instant::now());
        let child = c.spawn().map_err(io(format!("starting {what}")))?;
        self.state.vmm_pid = child.id() as i32;
        self.supervise(child, what, "vmm.log", true);
        self.state.save(&self.dir).map_err(io("saving sandbox state"))
    }

    /// The directory of the sandbox's vsock sockets, owned by the sandbox's own uid (its
    /// VMM or vsock daemon creates them there) and closed to everyone else.
    pub(super) fn make_vsock_dir(&self) -> Result<(), SandboxError> {
        use std::os::unix::fs::PermissionsExt;
        let d = self.dir.join(VSOCK_DIR);
        std::fs::create_dir(&d).map_err(io("creating the vsock directory"))?;
        let id = self.state.host_uid();
        std::os::unix::fs::chown(&d, Some(id), Some(id)).map_err(io("handing the vsock directory over"))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).map_err(io("closing the vsock directory"))
    }

    /// What every process of the sandbox gets between fork and exec: its cgroup, and
    /// death with its starter for foreground runs.
    pub(super) fn confine_spawn(&self, c: &mut Command, opts: &SandboxOptions) {
        if let Some(cg) = &self.cgroup {
            cg.join_before_exec(c);
        }
        if opts.tie_to_parent {
            tie_to_parent(c);
        }
    }

    /// Starts a helper daemon logging to `log` (as `user` when given), and waits for its socket.
    fn spawn_helper(
        &mut self,
        mut c: Command,
        opts: &SandboxOptions,
        what: &str,
        log: &str,
        sock: &Path,
        user: Option<u32>,
    ) -> Result<(), SandboxError> {
        c.stdin(Stdio::null()).stdout(Stdio::null());
        c.stderr(crate::files::create_private(&self.dir.join(log)).map_err(io(format!("{what} log")))?);
        self.confine_spawn(&mut c, opts);
        if let Some(id) = user {
            // A network and IPC of its own: it talks over its unix sockets only. A root
            // of its own: its libraries and its socket's directory, nothing else.
            unprivileged::own_namespaces(&mut c, libc::CLONE_NEWNET | libc::CLONE_NEWIPC);
            let served: Vec<PathBuf> = sock.parent().map(Path::to_path_buf).into_iter().collect();
            crate::backend::minimal_root::install(&mut c, &unprivileged::exec_only_dir().join(".root"), &served)
                .map_err(io(format!("{what}'s root")))?;
            unprivileged::drop_to(&mut c, id, id);
            helper_filter::install_before_exec(&mut c, helper_filter::For::Helper).map_err(filter_err)?;
        }
        let child = c.spawn().map_err(io(format!("starting {what}")))?;
        self.state.helper_pids.push(child.id() as i32);
        self.supervise(child, what, log, false);
        // On record at once: a starter killed from here on leaves nothing unnamed.
        self.state.save(&self.dir).map_err(io("saving sandbox state"))?;
        self.wait_for_socket(sock, what, log)
    }

    pub(super) fn start_qemu(&mut self, opts: &SandboxOptions) -> Result<(), SandboxError> {
        let vhost_sock = self.dir.join(VSOCK_DIR).join(vhost_vsock::SOCKET);
        let bin = vhost_vsock::find()?;
        let prog = unprivileged::Program::open_exec_only(&bin, &unprivileged::exec_only_dir())
            .map_err(io(format!("opening {}", bin.display())))?;
        let mut d = vhost_vsock::command(&prog.via_fd(), guest_cid(&self.id), &vhost_sock, &self.state.vsock_uds);
        prog.name(&mut d);
        // It needs nothing privileged, only its directory.
        self.spawn_helper(d, opts, vhost_vsock::EXE, vhost_vsock::LOG, &vhost_sock, Some(self.state.host_uid()))?;
        let fs_socket = self.start_virtiofsd(opts)?;
        let net = self.state.net.clone();
        let devices = qemu::SandboxDevices {
            vhost_vsock: &vhost_sock,
            fs_socket: fs_socket.as_deref(),
            tap: net.as_ref().map(|n| (n.tap.as_str(), n.mac.as_str())),
            disks: &opts.disks,
            balloon: opts.balloon,
        };
        let jail = self.dir.join("qemu-root");
        std::fs::create_dir(&jail).map_err(io("creating QEMU's empty root"))?;
        let mut q = qemu::sandbox_command(&opts.boot, opts.kvm, &devices, &jail, self.state.host_uid())?;
        if opts.balloon {
            // QMP, for the balloon's target (resize); bound before QEMU chroots.
            use std::os::unix::fs::DirBuilderExt;
            let qmp = self.dir.join(super::QMP_SOCK);
            let qmp_dir = qmp.parent().unwrap_or(&self.dir);
            std::fs::DirBuilder::new().mode(0o700).create(qmp_dir).map_err(io("creating QEMU's QMP directory"))?;
            let path = qmp.display().to_string().replace(',', ",,");
            q.arg("-qmp").arg(format!("unix:{path},server=on,wait=off"));
        }
        q.stdout(self.start_console_pump(opts)?);
        unprivileged::bound_capabilities(&mut q, qemu::SANDBOX_CAPS);
        self.spawn_vmm(q, opts, "qemu", Some(helper_filter::For::Qemu))?;
        self.connect_tap()
    }

    /// The capped console log of a VMM that cannot cap its own; returns the pipe end
    /// the VMM writes its console to.
    fn start_console_pump(&mut self, opts: &SandboxOptions) -> Result<std::io::PipeWriter, SandboxError> {
        let (r, w) = std::io::pipe().map_err(io("console pipe"))?;
        let log = crate::files::create_private(&self.dir.join("console.log")).map_err(io("console log"))?;
        let id = self.state.host_uid();
        let bin = console::find()?;
        // Run through a descriptor of an execute-only copy: the sandbox's uid need not
        // reach the binary's path, and the pump is non-dumpable from its first instruction.
        let prog = unprivileged::Program::open_exec_only(&bin, &unprivileged::exec_only_dir())
            .map_err(io(format!("opening {}", bin.display())))?;
        let mut c = console::command(&prog, r, log, CONSOLE_MAX_BYTES);
        self.confine_spawn(&mut c, opts);
        unprivileged::own_namespaces(&mut c, libc::CLONE_NEWNET | libc::CLONE_NEWIPC);
        unprivileged::drop_to(&mut c, id, id);
        helper_filter::install_before_exec(&mut c, helper_filter::For::Helper).map_err(filter_err)?;
        let child = c.spawn().map_err(io(format!("starting {}", console::EXE)))?;
        self.state.helper_pids.push(child.id() as i32);
        self.supervise(child, console::EXE, "console.log", false);
        Ok(w)
    }

    /// Once the VMM has created its tap: onto the bridge, or redirected to the pod's interface.
    fn connect_tap(&self) -> Result<(), SandboxError> {
        match &self.state.net {
            Some(crate::net::NetState { pod: Some(pod), .. }) => pod.redirect(Duration::from_secs(10))?,
            Some(n) => crate::net::attach(n, Duration::from_secs(10))?,
            None => {}
        }
        Ok(())
    }

    /// virtiofsd sharing `<dir>/shared` with the guest, when it is installed (without it
    /// container rootfs are uploaded instead). Returns its vhost-user socket.
    fn start_virtiofsd(&mut self, opts: &SandboxOptions) -> Result<Option<PathBuf>, SandboxError> {
        if !opts.shared_fs {
            return Ok(None);
        }
        let Some(bin) = virtiofsd::find() else {
            log::info!("virtiofsd not found: containers get uploaded rootfs");
            return Ok(None);
        };
        let shared = self.dir.join("shared");
        // Only virtiofsd (root) serves it: no other uid lists a tenant's rootfs or volumes.
        crate::files::private_dir_all(&shared, 0o700).map_err(io("creating the shared directory"))?;
        crate::mounts::prepare_share(&shared)
            .map_err(|e| io("preparing the shared directory")(std::io::Error::other(e)))?;
        let sock = self.dir.join(virtiofsd::SOCKET);
        let d = virtiofsd::command(&bin, &sock, &shared)
            .map_err(|e| io("virtiofsd's filter")(std::io::Error::other(e.to_string())))?;
        // Root, as serving files as their owners needs (it drops the rest itself).
        self.spawn_helper(d, opts, virtiofsd::EXE, virtiofsd::LOG, &sock, None)?;
        self.state.shared_dir = Some(shared);
        Ok(Some(sock))
    }

    fn wait_for_socket(&mut self, sock: &Path, who: &str, log: &str) -> Result<(), SandboxError> {
        let until = Instant::now() + Duration::from_secs(5);
        while !sock.exists() {
            // The helper that makes this socket is the one started last.
            if let Some(c) = self.children.last_mut().map(|s| &mut s.child) {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(SandboxError::VmmDied {
                        status: format!("{who} exited: {st}"),
                        log: tail(&self.dir.join(log)),
                    });
                }
            }
            if Instant::now() > until {
                return Err(SandboxError::Io {
                    what: format!("{who} did not create {}{}", sock.display(), tail(&self.dir.join(log))),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }
}
