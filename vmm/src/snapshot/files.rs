//! Writing and reading a snapshot directory. The files are opened before the VMM is
//! confined ([`SnapshotTarget`]), so a confined VMM writes only there, with pwrite.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::{Header, SnapshotError, VmState, MAX_HEADER_BYTES, MAX_STATE_BYTES, MEMORY_FILE, STATE_FILE};

const PAGE: usize = 4096;
/// Guest memory is copied out this much at a time.
const CHUNK: usize = 1 << 20;

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io { what, path: path.to_path_buf(), source }
}

/// A snapshot directory's files, created empty (memory as one hole of the guest's
/// size) when the VMM starts.
pub struct SnapshotTarget {
    pub dir: PathBuf,
    state: File,
    memory: File,
    taken: bool,
}

fn create(path: &Path) -> Result<File, SnapshotError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io("creating", path))
}

impl SnapshotTarget {
    pub fn create(dir: &Path, mem_bytes: u64) -> Result<Self, SnapshotError> {
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io("creating", dir)(e)),
            _ => {}
        }
        let state = create(&dir.join(STATE_FILE))?;
        let memory_path = dir.join(MEMORY_FILE);
        let memory = create(&memory_path)?;
        memory.set_len(mem_bytes).map_err(io("sizing", &memory_path))?;
        Ok(Self { dir: dir.to_path_buf(), state, memory, taken: false })
    }
}

/// How a save went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveReport {
    pub memory_bytes_written: u64,
    pub state_bytes: u64,
    pub took: Duration,
}

/// Writes guest memory (non-zero pages only) and then the header and state, so a
/// state file that checks out always has its memory complete beside it. Once per
/// target: pages left zero a second time would keep the first snapshot's data.
pub fn save(
    target: &mut SnapshotTarget,
    mut header: Header,
    state: &VmState,
    mem: &GuestMemoryMmap,
) -> Result<SaveReport, SnapshotError> {
    let started = Instant::now();
    if target.taken {
        return Err(SnapshotError::Unsupported("a second snapshot into the same directory".into()));
    }
    target.taken = true;
    let mem_path = target.dir.join(MEMORY_FILE);
    let mut written = 0u64;
    let mut file_offset = 0u64;
    let mut buf = vec![0u8; CHUNK];
    for region in mem.iter() {
        let len = region.len() as usize;
        let mut done = 0usize;
        while done < len {
            let n = CHUNK.min(len - done);
            let chunk = &mut buf[..n];
            region
                .read_slice(chunk, vm_memory::MemoryRegionAddress(done as u64))
                .map_err(|e| SnapshotError::Memory(e.to_string()))?;
            for (i, page) in chunk.chunks(PAGE).enumerate() {
                if page.iter().any(|b| *b != 0) {
                    let at = file_offset + (done + i * PAGE) as u64;
                    target.memory.write_all_at(page, at).map_err(io("writing", &mem_path))?;
                    written += page.len() as u64;
                }
            }
            done += n;
        }
        file_offset += len as u64;
    }
    let config = bincode::config::standard();
    let body = bincode::serde::encode_to_vec(state, config).map_err(|e| SnapshotError::Memory(e.to_string()))?;
    header.state_len = body.len() as u64;
    header.state_sha256 = Sha256::digest(&body).into();
    let head = bincode::serde::encode_to_vec(&header, config).map_err(|e| SnapshotError::Memory(e.to_string()))?;
    let mut out = Vec::with_capacity(4 + head.len() + body.len());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&body);
    let state_path = target.dir.join(STATE_FILE);
    target.state.write_all_at(&out, 0).map_err(io("writing", &state_path))?;
    Ok(SaveReport { memory_bytes_written: written, state_bytes: out.len() as u64, took: started.elapsed() })
}

/// Reads and checks a snapshot directory: its header against this VMM and
/// `kvm_api`, the state against the header's hash; opens the memory file and checks
/// its size.
pub fn load(dir: &Path, kvm_api: i32) -> Result<(Header, VmState, File), SnapshotError> {
    let path = dir.join(STATE_FILE);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io("opening", &path))?;
    let mut bytes = Vec::new();
    f.take((4 + MAX_HEADER_BYTES + MAX_STATE_BYTES) as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io("reading", &path))?;
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(|| SnapshotError::corrupt(&path, "empty"))?;
    let head_len = u32::from_le_bytes(*len) as usize;
    if head_len > MAX_HEADER_BYTES || head_len > rest.len() {
        return Err(SnapshotError::corrupt(&path, format!("a header of {head_len} bytes")));
    }
    let (head, body) = rest.split_at(head_len);
    let config = bincode::config::standard().with_limit::<MAX_STATE_BYTES>();
    let (header, _): (Header, usize) =
        bincode::serde::decode_from_slice(head, config).map_err(|e| match head.get(..8) {
            Some(m) if m != super::MAGIC => SnapshotError::NotASnapshot { path: path.clone() },
            _ => SnapshotError::corrupt(&path, format!("header: {e}")),
        })?;
    header.check(&path, kvm_api)?;
    if body.len() as u64 != header.state_len {
        return Err(SnapshotError::corrupt(
            &path,
            format!("state is {} bytes, header says {}", body.len(), header.state_len),
        ));
    }
    if <[u8; 32]>::from(Sha256::digest(body)) != header.state_sha256 {
        return Err(SnapshotError::corrupt(&path, "state does not match its checksum"));
    }
    let (state, _): (VmState, usize) = bincode::serde::decode_from_slice(body, config)
        .map_err(|e| SnapshotError::corrupt(&path, format!("state: {e}")))?;
    if state.vcpus.len() != usize::from(header.vcpus)
        || state.irqchips.len() != 3
        || state.virtio.len() != header.devices.len()
    {
        return Err(SnapshotError::corrupt(&path, "vCPU, irqchip or device count differs from the header"));
    }
    let mem_path = dir.join(MEMORY_FILE);
    let memory = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&mem_path)
        .map_err(io("opening", &mem_path))?;
    let size = memory.metadata().map_err(io("reading", &mem_path))?.len();
    if size != header.mem_bytes {
        return Err(SnapshotError::corrupt(&mem_path, format!("{size} bytes, the header says {}", header.mem_bytes)));
    }
    Ok((header, state, memory))
}
