//! GGUF v2/v3 model files: metadata, tensor directory, and memory-mapped
//! tensor data (little-endian only).
//!
//! Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count,
//! metadata key-value pairs, tensor infos, padding to `general.alignment`,
//! then the data section that tensor offsets are relative to.

pub mod dequant;
mod reader;
#[cfg(test)]
mod tests;
mod value;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{EpsvecError, Result};
use dequant::GgmlType;
use reader::{Parse, Reader};
pub use value::GgufValue;

const MAGIC: &[u8; 4] = b"GGUF";
const ALIGNMENT_KEY: &str = "general.alignment";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Smallest encoding of a metadata pair: empty key, type, one-byte value.
const MIN_KV_BYTES: usize = 8 + 4 + 1;
/// Smallest encoding of a tensor info: empty name, n_dims, type, offset.
const MIN_TENSOR_INFO_BYTES: usize = 8 + 4 + 4 + 8;

/// One tensor's entry in the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` (ne[0]) is the fastest-varying dimension.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Byte offset relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// PyTorch order: the ggml dims reversed. Dims are at most `i64::MAX`
    /// for every tensor of an opened file.
    pub fn shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }

    /// Saturates rather than overflows; opened files never saturate.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |n, &d| n.saturating_mul(d))
    }

    /// Size in the data section (whole blocks; saturates like `n_elements`).
    pub fn n_bytes(&self) -> u64 {
        let blocks = self.n_elements() / self.ty.block_size() as u64;
        blocks.saturating_mul(self.ty.type_size() as u64)
    }
}

/// A range of a GGUF file's memory map, holding the map open.
pub struct Mapped {
    map: Arc<Mmap>,
    range: std::ops::Range<usize>,
}

impl std::ops::Deref for Mapped {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

/// An open, validated GGUF file. Tensor data stays in the memory map until
/// asked for.
pub struct GgufFile {
    path: PathBuf,
    mmap: Arc<Mmap>,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl GgufFile {
    /// Maps and validates `path`: header, metadata, tensor directory, and
    /// that every tensor's bytes lie inside the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| EpsvecError::io(path, e))?;
        // SAFETY: the map is read-only; as with any mmap, another process
        // truncating or rewriting the file while it is open is not supported.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| EpsvecError::io(path, e))?;
        let header = parse(&mmap).map_err(|reason| EpsvecError::corrupt(path, reason))?;
        Ok(Self {
            path: path.to_path_buf(),
            mmap: Arc::new(mmap),
            version: header.version,
            metadata: header.metadata,
            tensors: header.tensors,
            by_name: header.by_name,
            alignment: header.alignment,
            data_offset: header.data_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// File offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor of this file. A `TensorInfo` that does not
    /// fit this file (one from another file) gets an empty slice.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        self.tensor_range(info).and_then(|r| self.mmap.get(r)).unwrap_or(&[])
    }

    /// The tensor's bytes as a range of the shared memory map, which stays
    /// mapped while the result lives (weights used in place, not copied).
    pub fn tensor_mapped(&self, info: &TensorInfo) -> Option<Mapped> {
        let range = self.tensor_range(info).filter(|r| r.end <= self.mmap.len())?;
        Some(Mapped { map: self.mmap.clone(), range })
    }

    fn tensor_range(&self, info: &TensorInfo) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(self.data_offset.checked_add(info.offset)?).ok()?;
        let len = usize::try_from(info.n_bytes()).ok()?;
        Some(start..start.checked_add(len)?)
    }

    /// The tensor as row-major f32; its PyTorch shape is `info.shape()`.
    pub fn dequantize(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        let context = |reason: String| {
            EpsvecError::ModelLoad(format!("{}: tensor {:?}: {reason}", self.path.display(), info.name))
        };
        let n =
            usize::try_from(info.n_elements()).map_err(|_| context("too many elements for this platform".into()))?;
        dequant::dequantize(info.ty, self.tensor_bytes(info), n).map_err(|e| context(e.to_string()))
    }
}

/// Everything `open` reads before the data section.
#[derive(Debug)]
struct Header {
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

fn parse(buf: &[u8]) -> Parse<Header> {
    let mut r = Reader::new(buf);
    let magic = r.array::<4>("magic")?;
    if &magic != MAGIC {
        return Err(format!("bad magic {magic:02x?}, expected \"GGUF\""));
    }
    let version = r.u32("version")?;
    check_version(version)?;
    let n_tensors = r.count(MIN_TENSOR_INFO_BYTES, "tensor count")?;
    let n_kv = r.count(MIN_KV_BYTES, "metadata count")?;

    let metadata = read_metadata(&mut r, n_kv)?;
    let alignment = alignment(&metadata)?;

    let mut tensors = Vec::with_capacity(n_tensors);
    let mut by_name = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let info = read_tensor_info(&mut r).map_err(|e| format!("tensor info {i}: {e}"))?;
        if by_name.insert(info.name.clone(), i).is_some() {
            return Err(format!("duplicate tensor name {:?}", info.name));
        }
        tensors.push(info);
    }

    let data_offset = (r.pos() as u64).checked_next_multiple_of(alignment).ok_or("data section offset overflows")?;
    for info in &tensors {
        check_tensor(info, alignment, data_offset, buf.len() as u64)
            .map_err(|e| format!("tensor {:?}: {e}", info.name))?;
    }
    Ok(Header { version, metadata, tensors, by_name, alignment, data_offset })
}

fn check_version(version: u32) -> Parse<()> {
    match version {
        2 | 3 => Ok(()),
        // A big-endian v3 file reads as 0x0300_0000 here.
        v if v & 0xFFFF == 0 => Err(format!("version {v:#x}: big-endian GGUF is not supported")),
        v => Err(format!("unsupported GGUF version {v} (supported: 2, 3)")),
    }
}

fn read_metadata(r: &mut Reader, n_kv: usize) -> Parse<BTreeMap<String, GgufValue>> {
    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = r.string("metadata key").map_err(|e| format!("metadata pair {i}: {e}"))?;
        let value = r.u32("value type").and_then(|ty| r.value(ty)).map_err(|e| format!("metadata key {key:?}: {e}"))?;
        match metadata.entry(key) {
            Entry::Vacant(slot) => slot.insert(value),
            Entry::Occupied(slot) => return Err(format!("duplicate metadata key {:?}", slot.key())),
        };
    }
    Ok(metadata)
}

/// `general.alignment` if present (any integer type), else ggml's default.
fn alignment(metadata: &BTreeMap<String, GgufValue>) -> Parse<u64> {
    let Some(value) = metadata.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match value.as_u64() {
        Some(a) if a.is_power_of_two() => Ok(a),
        _ => Err(format!("{ALIGNMENT_KEY} is {value:?}, expected a power of two")),
    }
}

fn read_tensor_info(r: &mut Reader) -> Parse<TensorInfo> {
    let name = r.string("tensor name")?;
    let context = |e: String| format!("{name:?}: {e}");
    let n_dims = r.u32("dimension count").map_err(context)?;
    if n_dims > MAX_DIMS {
        return Err(context(format!("{n_dims} dimensions, at most {MAX_DIMS} allowed")));
    }
    let dims = (0..n_dims).map(|_| r.u64("dimension")).collect::<Parse<Vec<_>>>().map_err(context)?;
    let id = r.u32("tensor type").map_err(context)?;
    let ty = GgmlType::from_id(id).ok_or_else(|| context(format!("unknown ggml type id {id}")))?;
    let offset = r.u64("tensor offset").map_err(context)?;
    Ok(TensorInfo { name, dims, ty, offset })
}

/// Checks what ggml checks of a tensor (element count fits in i64, rows are
/// whole blocks, offset aligned) and that its bytes lie inside the file.
fn check_tensor(info: &TensorInfo, alignment: u64, data_offset: u64, file_len: u64) -> Parse<()> {
    let limit = i64::MAX as u64;
    if info.dims.iter().any(|&d| d > limit) || info.n_elements() > limit {
        return Err(format!("dims {:?} exceed i64 range", info.dims));
    }
    let block = info.ty.block_size() as u64;
    let row = info.dims.first().copied().unwrap_or(1);
    if row % block != 0 {
        return Err(format!("row of {row} elements is not a whole number of {} blocks ({block})", info.ty));
    }
    if info.offset % alignment != 0 {
        return Err(format!("offset {} is not a multiple of the alignment {alignment}", info.offset));
    }
    let start = data_offset.checked_add(info.offset);
    let end = start.and_then(|s| s.checked_add(info.n_bytes()));
    match end {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(format!(
            "{} bytes at {data_offset} + {} extend past the end of the file ({file_len} bytes)",
            info.n_bytes(),
            info.offset
        )),
    }
}
