//! Loading `vmlinux` (ELF, with or without a PVH note) and `bzImage` kernels.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::bootparam::setup_header;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::BootError;
use crate::memory::HIMEM_START;

/// How the vCPU enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// 32-bit protected mode, paging off, `%ebx` = `hvm_start_info` (Xen PVH ELF note).
    Pvh,
    /// 64-bit long mode, identity paging, `%rsi` = zero page (Linux boot protocol).
    Linux64,
}

/// A kernel in guest memory, ready to be entered.
#[derive(Clone, Copy, Debug)]
pub struct LoadedKernel {
    pub protocol: BootProtocol,
    pub entry: GuestAddress,
    /// First byte after the kernel image; the initramfs goes above it.
    pub end: u64,
    /// The bzImage setup header, to be copied into the zero page.
    pub setup_header: Option<setup_header>,
}

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const BZIMAGE_MAGIC_OFFSET: u64 = 0x202;
const BZIMAGE_MAGIC: [u8; 4] = *b"HdrS";
/// The 64-bit entry of a bzImage's protected-mode part (`startup_64`).
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

/// Loads the kernel at `path` into `mem`, choosing the format by its magic bytes.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path, low_ram_end: u64) -> Result<LoadedKernel, BootError> {
    let name = path.display().to_string();
    let mut file = File::open(path).map_err(|source| BootError::OpenKernel { path: name.clone(), source })?;
    let size = file.metadata().map_err(|source| BootError::OpenKernel { path: name.clone(), source })?.len();
    if size > low_ram_end.saturating_sub(HIMEM_START) {
        return Err(BootError::KernelTooLarge { path: name, size, ram: low_ram_end });
    }
    let format = sniff(&mut file).map_err(|source| BootError::OpenKernel { path: name.clone(), source })?;
    let load_err = |e: linux_loader::loader::Error| BootError::LoadKernel { path: name.clone(), reason: e.to_string() };
    match format {
        Format::Elf => {
            let r = Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(load_err)?;
            let (protocol, entry) = match r.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(addr) => (BootProtocol::Pvh, addr),
                _ => (
                    BootProtocol::Linux64,
                    elf_entry(&mut file).map_err(|source| BootError::OpenKernel { path: name.clone(), source })?,
                ),
            };
            Ok(LoadedKernel { protocol, entry, end: r.kernel_end, setup_header: None })
        }
        Format::BzImage => {
            let r = BzImage::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(load_err)?;
            Ok(LoadedKernel {
                protocol: BootProtocol::Linux64,
                entry: GuestAddress(r.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET),
                end: r.kernel_end,
                setup_header: r.setup_header,
            })
        }
        Format::Unknown => Err(BootError::UnknownKernelFormat { path: name }),
    }
}

enum Format {
    Elf,
    BzImage,
    Unknown,
}

fn sniff(file: &mut File) -> std::io::Result<Format> {
    let mut magic = [0u8; 4];
    file.seek(SeekFrom::Start(0))?;
    if file.read_exact(&mut magic).is_ok() && magic == ELF_MAGIC {
        return Ok(Format::Elf);
    }
    file.seek(SeekFrom::Start(BZIMAGE_MAGIC_OFFSET))?;
    let found = file.read_exact(&mut magic).is_ok() && magic == BZIMAGE_MAGIC;
    file.seek(SeekFrom::Start(0))?;
    Ok(if found { Format::BzImage } else { Format::Unknown })
}

/// `e_entry` of an ELF64 header: linux-loader reports only where the image was put.
fn elf_entry(file: &mut File) -> std::io::Result<GuestAddress> {
    let mut buf = [0u8; 8];
    file.seek(SeekFrom::Start(0x18))?;
    file.read_exact(&mut buf)?;
    Ok(GuestAddress(u64::from_le_bytes(buf)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("mem")
    }

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(bytes).expect("write");
        f
    }

    #[test]
    fn missing_kernel_names_the_path() {
        let e = load_kernel(&mem(), Path::new("/nonexistent/vmlinux"), 16 << 20).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/vmlinux"), "{e}");
    }

    #[test]
    fn non_elf_non_bzimage_is_rejected() {
        let f = file_with(&[0u8; 4096]);
        let e = load_kernel(&mem(), f.path(), 16 << 20).expect_err("garbage");
        assert!(matches!(e, BootError::UnknownKernelFormat { .. }), "{e}");
    }

    #[test]
    fn truncated_elf_is_an_error_not_a_panic() {
        let f = file_with(&[0x7f, b'E', b'L', b'F', 2, 1, 1]);
        let e = load_kernel(&mem(), f.path(), 16 << 20).expect_err("truncated");
        assert!(matches!(e, BootError::LoadKernel { .. }), "{e}");
    }

    #[test]
    fn kernel_larger_than_ram_is_rejected_before_loading() {
        let f = file_with(&vec![0u8; 3 << 20]);
        let e = load_kernel(&mem(), f.path(), 2 << 20).expect_err("too large");
        assert!(matches!(e, BootError::KernelTooLarge { .. }), "{e}");
    }

    #[test]
    fn bzimage_header_without_valid_fields_is_rejected() {
        let mut img = vec![0u8; 8192];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        let f = file_with(&img);
        let e = load_kernel(&mem(), f.path(), 16 << 20).expect_err("bad bzimage");
        assert!(matches!(e, BootError::LoadKernel { .. }), "{e}");
    }
}
