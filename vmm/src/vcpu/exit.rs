//! What each kind of vCPU exit means for the VM, kept free of KVM so it is unit-tested.

/// KVM_SYSTEM_EVENT types.
const SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const SYSTEM_EVENT_RESET: u32 = 2;
const SYSTEM_EVENT_CRASH: u32 = 3;

/// KVM_INTERNAL_ERROR_EMULATION.
const SUBERROR_EMULATION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitKind {
    /// Port or MMIO access, already served.
    Io,
    Hlt,
    Shutdown,
    FailEntry(u64),
    InternalError,
    SystemEvent(u32),
    Other(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum ExitAction {
    Continue,
    Fail,
}

/// Errors that end a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    #[error("kvm {op} failed: {source}")]
    Kvm { op: &'static str, source: kvm_ioctls::Error },
    #[error("cannot build vcpu {0}")]
    Setup(&'static str),
    #[error("confining the vcpu thread: {0}")]
    Confine(crate::confine::ConfineError),
    #[error("vcpu {vcpu}: guest triple fault (KVM_EXIT_SHUTDOWN) at rip {rip:#x}")]
    TripleFault { vcpu: u8, rip: u64 },
    #[error("vcpu {vcpu}: guest halted with interrupts off (KVM_EXIT_HLT) at rip {rip:#x}")]
    Halted { vcpu: u8, rip: u64 },
    #[error("vcpu {vcpu}: VM entry failed (KVM_EXIT_FAIL_ENTRY, hardware reason {reason:#x}) at rip {rip:#x}")]
    FailEntry { vcpu: u8, reason: u64, rip: u64 },
    #[error("vcpu {vcpu}: KVM could not emulate an instruction (KVM_EXIT_INTERNAL_ERROR, emulation failure) at rip {rip:#x}")]
    EmulationFailure { vcpu: u8, rip: u64 },
    #[error("vcpu {vcpu}: KVM internal error (KVM_EXIT_INTERNAL_ERROR, suberror {suberror}) at rip {rip:#x}")]
    Internal { vcpu: u8, suberror: u32, rip: u64 },
    #[error("vcpu {vcpu}: guest {what} (KVM_EXIT_SYSTEM_EVENT) at rip {rip:#x}")]
    SystemEvent { vcpu: u8, what: &'static str, rip: u64 },
    #[error("vcpu {vcpu}: unexpected exit {name} at rip {rip:#x}")]
    Unexpected { vcpu: u8, name: String, rip: u64 },
}

/// Every exit other than a served access ends the VM: with an in-kernel irqchip,
/// KVM only reports HLT when the guest can never wake up again.
pub fn classify(kind: &ExitKind) -> ExitAction {
    match kind {
        ExitKind::Io => ExitAction::Continue,
        _ => ExitAction::Fail,
    }
}

pub fn error_for(kind: ExitKind, vcpu: u8, rip: u64, suberror: u32) -> VcpuError {
    match kind {
        ExitKind::Shutdown => VcpuError::TripleFault { vcpu, rip },
        ExitKind::Hlt => VcpuError::Halted { vcpu, rip },
        ExitKind::FailEntry(reason) => VcpuError::FailEntry { vcpu, reason, rip },
        ExitKind::InternalError if suberror == SUBERROR_EMULATION => VcpuError::EmulationFailure { vcpu, rip },
        ExitKind::InternalError => VcpuError::Internal { vcpu, suberror, rip },
        ExitKind::SystemEvent(t) => {
            let what = match t {
                SYSTEM_EVENT_SHUTDOWN => "shutdown",
                SYSTEM_EVENT_RESET => "reset",
                SYSTEM_EVENT_CRASH => "crash",
                _ => "system event",
            };
            VcpuError::SystemEvent { vcpu, what, rip }
        }
        ExitKind::Io => VcpuError::Unexpected { vcpu, name: "io".into(), rip },
        ExitKind::Other(name) => VcpuError::Unexpected { vcpu, name, rip },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_accesses_continue() {
        assert_eq!(classify(&ExitKind::Io), ExitAction::Continue);
        for k in [
            ExitKind::Hlt,
            ExitKind::Shutdown,
            ExitKind::InternalError,
            ExitKind::FailEntry(7),
            ExitKind::Other("Nmi".into()),
        ] {
            assert_eq!(classify(&k), ExitAction::Fail, "{k:?}");
        }
    }

    #[test]
    fn errors_name_the_exit_reason_and_guest_rip() {
        let e = error_for(ExitKind::Shutdown, 0, 0x10_0042, 0).to_string();
        assert!(e.contains("triple fault") && e.contains("KVM_EXIT_SHUTDOWN") && e.contains("0x100042"), "{e}");
        let e = error_for(ExitKind::InternalError, 1, 0xffff_ffff_8100_0000, SUBERROR_EMULATION).to_string();
        assert!(e.contains("emulation failure") && e.contains("vcpu 1") && e.contains("0xffffffff81000000"), "{e}");
        let e = error_for(ExitKind::InternalError, 0, 0x1000, 3).to_string();
        assert!(e.contains("suberror 3"), "{e}");
        let e = error_for(ExitKind::FailEntry(0x21), 0, 0x1000, 0).to_string();
        assert!(e.contains("0x21") && e.contains("FAIL_ENTRY"), "{e}");
        let e = error_for(ExitKind::SystemEvent(SYSTEM_EVENT_CRASH), 0, 0x1000, 0).to_string();
        assert!(e.contains("crash"), "{e}");
        let e = error_for(ExitKind::Hlt, 0, 0x2000, 0).to_string();
        assert!(e.contains("KVM_EXIT_HLT") && e.contains("0x2000"), "{e}");
    }
}
