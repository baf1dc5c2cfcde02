//! Boot information handed to the kernel: command line, initramfs, and either the
//! Linux zero page or the PVH start info, each carrying the e820 map.

use std::path::Path;

use linux_loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::cmdline::Cmdline;
use linux_loader::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{BootError, BootProtocol, LoadedKernel};
use crate::memory::{e820_map, low_ram_end, CMDLINE_ADDR, CMDLINE_MAX, PVH_INFO_ADDR, PVH_MEMMAP_ADDR, ZERO_PAGE_ADDR};

const PVH_MAGIC: u32 = 0x336e_c578;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;

/// Where the initramfs was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitrdRange {
    pub addr: u64,
    pub size: u64,
}

/// Builds the command line from the user's string plus device announcements,
/// e.g. `virtio_mmio.device=4K@0xd0001000:5`.
pub fn build_cmdline(base: &str, extra: &[String]) -> Result<Cmdline, BootError> {
    let mut cmdline = Cmdline::new(CMDLINE_MAX).map_err(|e| BootError::Cmdline(e.to_string()))?;
    if !base.trim().is_empty() {
        cmdline.insert_str(base.trim()).map_err(|e| BootError::Cmdline(e.to_string()))?;
    }
    for arg in extra {
        cmdline.insert_str(arg).map_err(|e| BootError::Cmdline(e.to_string()))?;
    }
    Ok(cmdline)
}

/// Copies the initramfs to the top of low RAM, page-aligned, above the kernel.
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel: &LoadedKernel,
    mem_bytes: u64,
) -> Result<InitrdRange, BootError> {
    let name = path.display().to_string();
    let mut file = std::fs::File::open(path).map_err(|source| BootError::ReadInitrd { path: name.clone(), source })?;
    let size = file.metadata().map_err(|source| BootError::ReadInitrd { path: name.clone(), source })?.len();
    let top = low_ram_end(mem_bytes);
    let addr = top.checked_sub(size).map(|a| a & !0xfff).ok_or(BootError::InitrdTooLarge { size })?;
    if addr < kernel.end {
        return Err(BootError::InitrdTooLarge { size });
    }
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(|e| BootError::ReadInitrd { path: name, source: std::io::Error::other(e.to_string()) })?;
    Ok(InitrdRange { addr, size })
}

/// Writes the command line and the protocol's boot structure. Returns the address
/// handed to the kernel in `%rsi` (zero page) or `%ebx` (PVH start info).
pub fn write_boot_info(
    mem: &GuestMemoryMmap,
    kernel: &LoadedKernel,
    cmdline: &Cmdline,
    initrd: Option<InitrdRange>,
    mem_bytes: u64,
) -> Result<u64, BootError> {
    let cstr = cmdline.as_cstring().map_err(|e| BootError::Cmdline(e.to_string()))?;
    let bytes = cstr.as_bytes_with_nul();
    mem.write_slice(bytes, GuestAddress(CMDLINE_ADDR)).map_err(|_| BootError::GuestWrite { what: "command line" })?;
    let e820 = e820_map(mem_bytes).map_err(|_| BootError::GuestWrite { what: "e820 map" })?;
    match kernel.protocol {
        BootProtocol::Linux64 => {
            let mut params = boot_params::default();
            if let Some(hdr) = kernel.setup_header {
                params.hdr = hdr;
            }
            params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
            params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
            params.hdr.header = KERNEL_HDR_MAGIC;
            params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
            params.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
            params.hdr.cmdline_size = (bytes.len() - 1) as u32;
            if let Some(rd) = initrd {
                params.hdr.ramdisk_image = rd.addr as u32;
                params.hdr.ramdisk_size = rd.size as u32;
            }
            if e820.len() > params.e820_table.len() {
                return Err(BootError::GuestWrite { what: "e820 map (too many entries)" });
            }
            for (slot, e) in params.e820_table.iter_mut().zip(&e820) {
                *slot = boot_e820_entry { addr: e.addr, size: e.size, r#type: e.kind };
            }
            params.e820_entries = e820.len() as u8;
            mem.write_obj(params, GuestAddress(ZERO_PAGE_ADDR))
                .map_err(|_| BootError::GuestWrite { what: "zero page" })?;
            Ok(ZERO_PAGE_ADDR)
        }
        BootProtocol::Pvh => {
            let mut info = hvm_start_info {
                magic: PVH_MAGIC,
                version: 1,
                cmdline_paddr: CMDLINE_ADDR,
                memmap_paddr: PVH_MEMMAP_ADDR,
                memmap_entries: e820.len() as u32,
                ..Default::default()
            };
            let mut next = PVH_MEMMAP_ADDR;
            for e in &e820 {
                let entry = hvm_memmap_table_entry { addr: e.addr, size: e.size, type_: e.kind, reserved: 0 };
                mem.write_obj(entry, GuestAddress(next)).map_err(|_| BootError::GuestWrite { what: "pvh memmap" })?;
                next += std::mem::size_of::<hvm_memmap_table_entry>() as u64;
            }
            if let Some(rd) = initrd {
                let module = hvm_modlist_entry { paddr: rd.addr, size: rd.size, ..Default::default() };
                mem.write_obj(module, GuestAddress(next)).map_err(|_| BootError::GuestWrite { what: "pvh modules" })?;
                info.nr_modules = 1;
                info.modlist_paddr = next;
            }
            mem.write_obj(info, GuestAddress(PVH_INFO_ADDR))
                .map_err(|_| BootError::GuestWrite { what: "pvh start info" })?;
            Ok(PVH_INFO_ADDR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{E820_RAM, EBDA_START, HIMEM_START};
    use std::io::Write;

    const MEM: u64 = 64 << 20;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).expect("mem")
    }

    fn kernel(protocol: BootProtocol) -> LoadedKernel {
        LoadedKernel { protocol, entry: GuestAddress(HIMEM_START), end: 4 << 20, setup_header: None }
    }

    #[test]
    fn zero_page_carries_magic_cmdline_initrd_and_e820() {
        let m = mem();
        let cl = build_cmdline("console=ttyS0", &["virtio_mmio.device=4K@0xd0001000:5".into()]).expect("cmdline");
        let rd = InitrdRange { addr: 0x300_0000, size: 1234 };
        let at = write_boot_info(&m, &kernel(BootProtocol::Linux64), &cl, Some(rd), MEM).expect("boot info");
        assert_eq!(at, ZERO_PAGE_ADDR);
        let p: boot_params = m.read_obj(GuestAddress(ZERO_PAGE_ADDR)).expect("read");
        assert_eq!({ p.hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ p.hdr.boot_flag }, 0xaa55);
        assert_eq!({ p.hdr.ramdisk_image }, 0x300_0000);
        assert_eq!({ p.hdr.ramdisk_size }, 1234);
        assert_eq!(p.e820_entries, 3);
        assert_eq!({ p.e820_table[0].size }, EBDA_START);
        assert_eq!({ p.e820_table[2].addr }, HIMEM_START);
        assert_eq!({ p.e820_table[2].r#type }, E820_RAM);
        let mut buf = vec![0u8; { p.hdr.cmdline_size } as usize];
        m.read_slice(&mut buf, GuestAddress({ p.hdr.cmd_line_ptr } as u64)).expect("cmdline");
        assert_eq!(buf, b"console=ttyS0 virtio_mmio.device=4K@0xd0001000:5");
    }

    #[test]
    fn pvh_start_info_points_at_memmap_and_initrd_module() {
        let m = mem();
        let cl = build_cmdline("quiet", &[]).expect("cmdline");
        let rd = InitrdRange { addr: 0x300_0000, size: 99 };
        let at = write_boot_info(&m, &kernel(BootProtocol::Pvh), &cl, Some(rd), MEM).expect("boot info");
        let info: hvm_start_info = m.read_obj(GuestAddress(at)).expect("read");
        assert_eq!(info.magic, PVH_MAGIC);
        assert_eq!(info.memmap_entries, 3);
        assert_eq!(info.nr_modules, 1);
        let module: hvm_modlist_entry = m.read_obj(GuestAddress(info.modlist_paddr)).expect("module");
        assert_eq!((module.paddr, module.size), (0x300_0000, 99));
        let last: hvm_memmap_table_entry = m.read_obj(GuestAddress(info.memmap_paddr + 2 * 24)).expect("entry");
        assert_eq!((last.addr, last.addr + last.size), (HIMEM_START, MEM));
    }

    #[test]
    fn initrd_goes_page_aligned_to_the_top_of_low_ram() {
        let m = mem();
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(&[7u8; 5000]).expect("write");
        let rd = load_initrd(&m, f.path(), &kernel(BootProtocol::Linux64), MEM).expect("initrd");
        assert_eq!(rd.addr % 4096, 0);
        assert!(rd.addr + rd.size <= MEM);
        assert_eq!(m.read_obj::<u8>(GuestAddress(rd.addr + 4999)).expect("byte"), 7);
    }

    #[test]
    fn initrd_that_would_overlap_the_kernel_is_rejected() {
        let m = mem();
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(&vec![0u8; 62 << 20]).expect("write");
        let e = load_initrd(&m, f.path(), &kernel(BootProtocol::Linux64), MEM).expect_err("overlap");
        assert!(matches!(e, BootError::InitrdTooLarge { .. }));
    }

    #[test]
    fn overlong_cmdline_is_rejected() {
        let long = "x".repeat(CMDLINE_MAX + 1);
        assert!(build_cmdline(&long, &[]).is_err());
    }
}
