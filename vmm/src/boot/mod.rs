//! Loading a guest kernel and writing everything it expects to find at entry.

mod gdt;
mod kernel;
pub mod mptable;
mod paging;
mod params;

pub use gdt::{gdt_table, kvm_segment_from_gdt, GdtLayout, BOOT_GDT};
pub use kernel::{load_kernel, BootProtocol, LoadedKernel};
pub use paging::{setup_identity_paging, PAGE_TABLE_BYTES};
pub use params::{build_cmdline, load_initrd, write_boot_info, InitrdRange};

/// Errors while loading the kernel and its boot information.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot open kernel {path}: {source}")]
    OpenKernel { path: String, source: std::io::Error },
    #[error("kernel {path} is neither an ELF vmlinux nor a bzImage")]
    UnknownKernelFormat { path: String },
    #[error("cannot load kernel {path}: {reason}")]
    LoadKernel { path: String, reason: String },
    #[error("kernel {path} is {size} bytes, larger than guest RAM below the MMIO gap ({ram} bytes)")]
    KernelTooLarge { path: String, size: u64, ram: u64 },
    #[error("cannot read initramfs {path}: {source}")]
    ReadInitrd { path: String, source: std::io::Error },
    #[error("initramfs of {size} bytes does not fit in guest RAM above the kernel")]
    InitrdTooLarge { size: u64 },
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    #[error("cannot write {what} into guest memory")]
    GuestWrite { what: &'static str },
}
