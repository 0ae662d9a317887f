//! Weights kept in GGUF's quantized block formats on the CPU, with products
//! computed from the blocks.
//!
//! Numerics: a weight row is dequantized exactly (ggml's reference
//! arithmetic, `gguf::dequant`) into float32 just before it is used, and
//! multiplied with float32 activations. Results differ from dequantizing the
//! whole file at load only in the order of the sums (~1e-6 relative); memory
//! and the bytes read per token are the file's.
//!
//! - 1-64 rows (decoding steps): each thread owns a contiguous range of
//!   output rows. On AVX-512: one input row takes each value straight from
//!   the register it is dequantized into, four weight rows at a time
//!   (independent sums in flight, the next rows prefetched); more input rows
//!   take four weight rows dequantized into L1 at a time, multiplied with
//!   four input rows at a time (sixteen sums in flight, each load used four
//!   times). AVX2 does the same eight values wide, with two weight rows per
//!   tile (sixteen registers). Elsewhere one dequantized weight row meets
//!   four input rows at a time. Each sum is reduced the same way wherever it falls, so results
//!   do not depend on the thread count: a seeded run repeats on a machine.
//! - With 8-bit activations (`BlockMode`: the default for Q4_K/Q6_K, all
//!   types with `Int8`), decoding steps multiply by activations quantized
//!   to 8 bits instead, where the CPU (AVX-512 BW or AVX2) and the type have a
//!   kernel: `gguf::dequant::q8k` (Q4_K, Q6_K) and `q8_32` (Q4_0, Q4_1,
//!   Q5_0, Q5_1, Q8_0); one input row takes four weight rows at a time,
//!   more input rows four at a time.
//! - More rows (prompts, capture): a few MB of weight rows at a time are
//!   dequantized to a float32 tensor and multiplied by libtorch.

use std::ops::Range;

use tch::{Device, Kind, Tensor};

use crate::error::{EpsvecError, Result};
use crate::gguf::dequant::q8_32::{self, Q8Pairs};
use crate::gguf::dequant::q8k::{self, Q8Rows};
use crate::gguf::dequant::GgmlType;
#[cfg(target_arch = "x86_64")]
use crate::gguf::dequant::{avx2, avx512};
use crate::gguf::dequant::{dequantize_blocks, dequantizes};
use crate::gguf::Mapped;
use crate::model::matmul::{self, Shared};

/// Most rows the from-the-blocks kernel takes; more go to libtorch.
pub const MAX_ROWS: usize = 64;
/// Float32 elements per chunk of weight rows dequantized for libtorch (4 MB).
const CHUNK_ELEMENTS: usize = 1 << 20;
/// Input rows whose dot products share one pass over a weight row.
const GROUP: usize = 4;

/// How a GGUF file's quantized weights are computed with on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockMode {
    /// Dequantized to float32 tensors at load: the reference.
    Dequantized,
    /// Kept in their blocks, with float32 activations (exact dequantization).
    Exact,
    /// Kept in their blocks; decoding steps quantize the activations to 8
    /// bits for the K-quants (`q8k`: Q4_K, Q6_K), where that is as fast or
    /// faster at every batch size, and stay float32 for the 32-value blocks,
    /// whose per-block float scales make 8-bit products slower than the
    /// float32 tile at 16 rows. The default.
    Auto,
    /// Kept in their blocks; decoding steps quantize the activations to 8
    /// bits for every type with a kernel on this CPU (`q8k`, and `q8_32`:
    /// Q4_0-Q5_1, Q8_0 per 32 values): fastest at one row.
    Int8,
}

impl BlockMode {
    /// Whether decoding steps take 8-bit products for blocks of `ty`.
    fn int8_for(self, ty: GgmlType) -> bool {
        match self {
            Self::Int8 => true,
            Self::Auto => matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K),
            Self::Exact | Self::Dequantized => false,
        }
    }
}

/// A matrix `[out, in]` stored as rows of GGUF blocks along `in`; the rows
/// may come in parts of different types (a fused q/k/v whose v is Q6_K).
pub struct BlockWeight {
    parts: Vec<Part>,
    in_dim: usize,
    out_dim: usize,
    /// Which types `decode` multiplies by 8-bit activations.
    mode: BlockMode,
}

/// Consecutive rows of one block type.
struct Part {
    ty: GgmlType,
    rows: usize,
    row_bytes: usize,
    bytes: Bytes,
}

/// A part's bytes: in place in the model file's memory map (so resident
/// memory is the file's), or owned (rows reordered at load).
pub enum Bytes {
    Mapped(Mapped),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Owned(v) => v,
        }
    }
}

impl BlockWeight {
    /// Whether a tensor of `ty` is kept as blocks (the quantized types that
    /// dequantize exactly; float types are loaded as tensors).
    pub fn keeps(ty: GgmlType) -> bool {
        ty.block_size() > 1 && dequantizes(ty)
    }

    /// `rows` rows of `in_dim` elements of `ty`, in `bytes`.
    pub fn new(ty: GgmlType, rows: usize, in_dim: usize, bytes: Bytes) -> Result<Self> {
        let fits = Self::keeps(ty)
            && in_dim.is_multiple_of(ty.block_size())
            && bytes.len() == rows * in_dim / ty.block_size() * ty.type_size();
        if !fits {
            return Err(EpsvecError::InvalidInput(format!(
                "{} bytes are not {rows} rows of {in_dim} {ty} elements",
                bytes.len()
            )));
        }
        let row_bytes = in_dim / ty.block_size() * ty.type_size();
        Ok(Self { parts: vec![Part { ty, rows, row_bytes, bytes }], in_dim, out_dim: rows, mode: BlockMode::Exact })
    }

    /// The rows of `pieces`, stacked in order (as `torch.cat(dim=0)`).
    pub fn stack(pieces: Vec<BlockWeight>) -> Result<Self> {
        let in_dim = pieces.first().map_or(0, |p| p.in_dim);
        if pieces.iter().any(|p| p.in_dim != in_dim) || pieces.is_empty() {
            return Err(EpsvecError::InvalidInput("stacked block weights need one input width".into()));
        }
        let mode = pieces[0].mode;
        let parts: Vec<Part> = pieces.into_iter().flat_map(|p| p.parts).collect();
        let out_dim = parts.iter().map(|p| p.rows).sum();
        Ok(Self { parts, in_dim, out_dim, mode })
    }

    /// The same weight, with `decode` computing as `mode` says.
    pub fn decoding_as(self, mode: BlockMode) -> Self {
        Self { mode, ..self }
    }

    /// Row `i` of the result is row `order[i]` of this (single-type) matrix.
    pub fn reorder_rows(self, order: &[usize]) -> Result<Self> {
        let [part] = &self.parts[..] else {
            return Err(EpsvecError::InvalidInput("only a single-type block weight is reordered".into()));
        };
        if order.len() != part.rows || order.iter().any(|&r| r >= part.rows) {
            return Err(EpsvecError::InvalidInput(format!("{order:?} is no order of {} rows", part.rows)));
        }
        let bytes = order.iter().flat_map(|&r| &part.bytes[r * part.row_bytes..(r + 1) * part.row_bytes]).copied();
        Ok(Self::new(part.ty, part.rows, self.in_dim, Bytes::Owned(bytes.collect()))?.decoding_as(self.mode))
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Row `row`'s type and bytes.
    fn row(&self, mut row: usize) -> (GgmlType, &[u8]) {
        for part in &self.parts {
            if row < part.rows {
                return (part.ty, &part.bytes[row * part.row_bytes..(row + 1) * part.row_bytes]);
            }
            row -= part.rows;
        }
        panic!("row {row} past the last of {}", self.out_dim);
    }

    /// Rows `rows`, dequantized into `out` (`[rows.len(), in]` row-major).
    pub fn dequantize_rows(&self, rows: Range<usize>, out: &mut [f32]) {
        assert!(rows.end <= self.out_dim && out.len() == rows.len() * self.in_dim);
        #[cfg(target_arch = "x86_64")]
        let wide = wide();
        for (r, out) in rows.zip(out.chunks_exact_mut(self.in_dim)) {
            let (ty, bytes) = self.row(r);
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: the CPU has the features.
                unsafe { avx512::dequantize_blocks(ty, bytes, out) };
                continue;
            }
            dequantize_blocks(ty, bytes, out);
        }
    }

    /// `y = x · Wᵀ` for `x` `[n, in]` and `y` `[n, out]`, `n` at most
    /// [`MAX_ROWS`] (any `n` works; more rows are faster through `forward`).
    pub fn times(&self, x: &[f32], n: usize, y: &mut [f32]) {
        self.product(x, n, y, &Int8 { k: None, pairs: None })
    }

    /// `times` for a decoding step: with activations quantized to 8 bits
    /// (`q8k`) for the parts with a kernel on this CPU, when loaded for it.
    pub fn decode(&self, x: &[f32], n: usize, y: &mut [f32]) {
        let wants = |runs: fn(GgmlType) -> bool, qk: usize| {
            self.in_dim.is_multiple_of(qk) && self.parts.iter().any(|p| self.mode.int8_for(p.ty) && runs(p.ty))
        };
        let int8 = Int8 {
            k: wants(q8k::runs, q8k::QK).then(|| Q8Rows::quantize(x, self.in_dim)),
            pairs: wants(q8_32::runs, 2 * q8_32::QK).then(|| Q8Pairs::quantize(x, self.in_dim)),
        };
        self.product(x, n, y, &int8)
    }

    fn product(&self, x: &[f32], n: usize, y: &mut [f32], int8: &Int8) {
        assert!(x.len() == n * self.in_dim && y.len() == n * self.out_dim);
        let y = Shared(y.as_mut_ptr());
        matmul::parallel(&|t, threads| {
            let per = self.out_dim.div_ceil(threads);
            let rows = (t * per).min(self.out_dim)..((t + 1) * per).min(self.out_dim);
            // SAFETY: each thread writes only the columns `rows` of `y`.
            unsafe { self.rows_times(rows, x, int8, &y) }
        });
    }

    /// Output columns `rows` of `product`: from the 8-bit activations in
    /// `int8` for the runs of a type with a kernel, else in float32.
    ///
    /// # Safety
    /// `y` points at `[x.len() / in, out]` floats, and no other thread writes these columns.
    unsafe fn rows_times(&self, rows: Range<usize>, x: &[f32], int8: &Int8, y: &Shared) {
        if int8.k.is_none() && int8.pairs.is_none() {
            return unsafe { self.float_rows_times(rows, x, y) };
        }
        let n = x.len() / self.in_dim;
        for (start, ty, bytes, row_bytes) in self.runs(rows) {
            // SAFETY (both): `runs(ty)`: the CPU has the kernel's features; these columns are this thread's.
            let int8_here = self.mode.int8_for(ty);
            match (&int8.k, &int8.pairs) {
                (Some(q), _) if int8_here && q8k::runs(ty) => unsafe {
                    int8_rows(&(ty, q), bytes, row_bytes, start, n, y, self.out_dim)
                },
                (_, Some(q)) if int8_here && q8_32::runs(ty) => unsafe {
                    int8_rows(&(ty, q), bytes, row_bytes, start, n, y, self.out_dim)
                },
                _ => unsafe { self.float_rows_times(start..start + bytes.len() / row_bytes, x, y) },
            }
        }
    }

    /// Output columns `rows` of `times`, on the widest vector unit this CPU has.
    ///
    /// # Safety
    /// As `rows_times`.
    unsafe fn float_rows_times(&self, rows: Range<usize>, x: &[f32], y: &Shared) {
        #[cfg(target_arch = "x86_64")]
        {
            if wide() {
                return unsafe { self.rows_times_avx512(rows, x, y) };
            }
            if crate::gguf::dequant::has_avx2() {
                return unsafe { self.rows_times_avx2(rows, x, y) };
            }
        }
        unsafe { self.rows_times_portable(rows, x, y) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn rows_times_avx512(&self, rows: Range<usize>, x: &[f32], y: &Shared) {
        // SAFETY: the features are enabled here.
        unsafe { self.tiled::<4>(true, rows, x, y) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_times_avx2(&self, rows: Range<usize>, x: &[f32], y: &Shared) {
        // SAFETY: the features are enabled here.
        unsafe { self.tiled::<2>(false, rows, x, y) }
    }

    /// One input row by the fused kernels; more by `W` weight rows
    /// dequantized at a time (into L1), multiplied with `TILE` input rows at
    /// a time by `tiles`. Inlined into the wrappers above, so the
    /// dequantization is compiled for their vector unit.
    ///
    /// # Safety
    /// AVX-512 F and BW if `wide`, else AVX2, FMA and F16C; these columns of
    /// `y` are this thread's.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tiled<const W: usize>(&self, wide: bool, rows: Range<usize>, x: &[f32], y: &Shared) {
        let (in_dim, out_dim) = (self.in_dim, self.out_dim);
        let n = x.len() / in_dim;
        let mut w = vec![0.0f32; W * in_dim];
        for (start, ty, bytes, row_bytes) in self.runs(rows) {
            // SAFETY (all): the caller's promises.
            if n == 1 && unsafe { fused_rows(wide, ty, bytes, row_bytes, start, x, y) } {
                continue;
            }
            for (chunk, weights) in bytes.chunks(W * row_bytes).enumerate() {
                let rows = weights.len() / row_bytes;
                for (k, row) in weights.chunks_exact(row_bytes).enumerate() {
                    let out = &mut w[k * in_dim..(k + 1) * in_dim];
                    if wide {
                        unsafe { avx512::dequantize_blocks(ty, row, out) };
                    } else {
                        dequantize_blocks(ty, row, out);
                    }
                }
                let o = start + chunk * W;
                if rows == W {
                    unsafe { tiles::<W>(wide, &w, x, in_dim, y, out_dim, o) };
                } else {
                    for k in 0..rows {
                        unsafe { tiles::<1>(wide, &w[k * in_dim..(k + 1) * in_dim], x, in_dim, y, out_dim, o + k) };
                    }
                }
            }
        }
    }

    /// Without AVX2: each weight row dequantized, then its dot products with
    /// `GROUP` input rows at a time.
    ///
    /// # Safety
    /// As `rows_times`.
    unsafe fn rows_times_portable(&self, rows: Range<usize>, x: &[f32], y: &Shared) {
        let (in_dim, out_dim) = (self.in_dim, self.out_dim);
        let mut sums = [0.0f32; GROUP];
        let mut w = vec![0.0f32; in_dim];
        for (start, ty, bytes, row_bytes) in self.runs(rows) {
            for (o, bytes) in (start..).zip(bytes.chunks_exact(row_bytes)) {
                dequantize_blocks(ty, bytes, &mut w);
                for (g, xs) in x.chunks(GROUP * in_dim).enumerate() {
                    let count = xs.len() / in_dim;
                    if count == GROUP {
                        dots_plain::<GROUP>(&w, xs, &mut sums);
                    } else {
                        for (r, x) in xs.chunks_exact(in_dim).enumerate() {
                            dots_plain::<1>(&w, x, &mut sums[r..r + 1]);
                        }
                    }
                    for (r, &s) in sums[..count].iter().enumerate() {
                        // SAFETY: row g * GROUP + r of x, column o: this thread's (the caller's promise).
                        unsafe { *y.get().add((g * GROUP + r) * out_dim + o) = s };
                    }
                }
            }
        }
    }

    /// The rows `rows` as runs within one part: (first row, type, the run's
    /// bytes, bytes per row).
    fn runs(&self, rows: Range<usize>) -> Vec<(usize, GgmlType, &[u8], usize)> {
        let mut first = 0;
        let mut runs = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let (start, end) = (rows.start.max(first), rows.end.min(first + part.rows));
            if start < end {
                let bytes = &part.bytes[(start - first) * part.row_bytes..(end - first) * part.row_bytes];
                runs.push((start, part.ty, bytes, part.row_bytes));
            }
            first += part.rows;
        }
        runs
    }

    /// `x` `[.., in]` (float32, CPU) times `Wᵀ`: `[.., out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut shape = x.size();
        let rows = x.f_reshape([-1, self.in_dim as i64])?.f_contiguous()?;
        let n = rows.size()[0] as usize;
        let out = if n <= MAX_ROWS { self.few_rows(&rows, n)? } else { self.many_rows(&rows)? };
        shape.pop();
        shape.push(self.out_dim as i64);
        Ok(out.f_reshape(shape.as_slice())?)
    }

    fn few_rows(&self, rows: &Tensor, n: usize) -> Result<Tensor> {
        if rows.kind() != Kind::Float || rows.device() != Device::Cpu {
            return Err(EpsvecError::InvalidInput(format!(
                "block weights multiply float32 CPU rows, got {:?} on {:?}",
                rows.kind(),
                rows.device()
            )));
        }
        let y = Tensor::f_empty([n as i64, self.out_dim as i64], (Kind::Float, Device::Cpu))?;
        // SAFETY: contiguous float32 CPU tensors (`y` fresh), `numel` elements each.
        let (xs, ys) = unsafe {
            (
                std::slice::from_raw_parts(rows.data_ptr() as *const f32, rows.numel()),
                std::slice::from_raw_parts_mut(y.data_ptr() as *mut f32, y.numel()),
            )
        };
        self.times(xs, n, ys);
        Ok(y)
    }

    /// Chunks of weight rows dequantized in parallel, each multiplied by libtorch.
    fn many_rows(&self, rows: &Tensor) -> Result<Tensor> {
        let chunk = (CHUNK_ELEMENTS / self.in_dim).max(1);
        let mut outs = Vec::with_capacity(self.out_dim.div_ceil(chunk));
        for start in (0..self.out_dim).step_by(chunk) {
            let end = (start + chunk).min(self.out_dim);
            let w = self.dequantized(start..end)?;
            outs.push(rows.f_mm(&w.f_transpose(0, 1)?)?);
        }
        Ok(Tensor::f_cat(&outs, 1)?)
    }

    /// Rows `rows` as a float32 tensor `[rows.len(), in]`, dequantized by every thread.
    pub fn dequantized(&self, rows: Range<usize>) -> Result<Tensor> {
        let w = Tensor::f_empty([rows.len() as i64, self.in_dim as i64], (Kind::Float, Device::Cpu))?;
        let (start, len) = (rows.start, rows.len());
        let ptr = Shared(w.data_ptr() as *mut f32);
        matmul::parallel(&|t, threads| {
            let per = len.div_ceil(threads);
            let mine = (t * per).min(len)..((t + 1) * per).min(len);
            // SAFETY: `w` is `[len, in]` float32; each thread writes its own rows.
            let out = unsafe {
                std::slice::from_raw_parts_mut(ptr.get().add(mine.start * self.in_dim), mine.len() * self.in_dim)
            };
            self.dequantize_rows(start + mine.start..start + mine.end, out);
        });
        Ok(w)
    }
}

/// Columns `start..` of one input row `x` for the weight rows in `bytes`
/// (one type), by the fused kernels (AVX-512 if `wide`, else AVX2) four
/// rows at a time; `false`, with nothing written, for a type without a
/// fused kernel.
///
/// # Safety
/// AVX-512 F and BW if `wide`, else AVX2, FMA and F16C; these columns of
/// `y` are the caller's alone.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fused_rows(
    wide: bool,
    ty: GgmlType,
    bytes: &[u8],
    row_bytes: usize,
    start: usize,
    x: &[f32],
    y: &Shared,
) -> bool {
    let mut rows = bytes.chunks_exact(row_bytes);
    let mut o = start;
    while rows.len() >= 4 {
        let group: [&[u8]; 4] = std::array::from_fn(|_| rows.next().expect("four rows left"));
        let mut sums = [0.0f32; 4];
        // SAFETY: the caller's promises; a type without a kernel is refused before any write.
        if !unsafe { fused_dots(wide, ty, group, x, &mut sums) } {
            return false;
        }
        unsafe { std::ptr::copy_nonoverlapping(sums.as_ptr(), y.get().add(o), 4) };
        o += 4;
    }
    for row in rows {
        let mut sum = [0.0f32];
        // SAFETY: as above.
        if !unsafe { fused_dots(wide, ty, [row], x, &mut sum) } {
            return false;
        }
        unsafe { *y.get().add(o) = sum[0] };
        o += 1;
    }
    true
}

/// `avx512::dots` if `wide`, else `avx2::dots`.
///
/// # Safety
/// As `fused_rows`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fused_dots<const R: usize>(
    wide: bool,
    ty: GgmlType,
    rows: [&[u8]; R],
    x: &[f32],
    sums: &mut [f32; R],
) -> bool {
    if wide {
        unsafe { avx512::dots(ty, rows, x, sums) }
    } else {
        unsafe { avx2::dots(ty, rows, x, sums) }
    }
}

/// A decoding step's activations quantized to 8 bits, for the kernels that take them.
struct Int8 {
    /// Per 256 values (K-quants).
    k: Option<Q8Rows>,
    /// Per 32 values, in block pairs (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
    pairs: Option<Q8Pairs>,
}

/// A kernel on activations quantized to 8 bits: `sums[j][k] = w[j] ·
/// x[rows[k]]` (see `q8k::dots`, `q8_32::dots`).
trait Int8Kernel {
    /// # Safety
    /// The kernel runs on this CPU.
    unsafe fn dots<const O: usize, const R: usize>(&self, w: [&[u8]; O], rows: [usize; R], sums: &mut [[f32; R]; O]);
}

impl Int8Kernel for (GgmlType, &Q8Rows) {
    unsafe fn dots<const O: usize, const R: usize>(&self, w: [&[u8]; O], rows: [usize; R], sums: &mut [[f32; R]; O]) {
        unsafe { q8k::dots(self.0, w, self.1, rows, sums) }
    }
}

impl Int8Kernel for (GgmlType, &Q8Pairs) {
    unsafe fn dots<const O: usize, const R: usize>(&self, w: [&[u8]; O], rows: [usize; R], sums: &mut [[f32; R]; O]) {
        unsafe { q8_32::dots(self.0, w, self.1, rows, sums) }
    }
}

/// Columns `start..` (one per row of `bytes`, `row_bytes` each) of each of
/// the `n` input rows: one input row with four weight rows at a time; more
/// input rows in groups with each weight row (eight at a time on AVX-512,
/// then four), the rest one by one.
///
/// # Safety
/// The kernel runs on this CPU; these columns of `y` (`[n, out_dim]`) are the caller's alone.
unsafe fn int8_rows(
    kernel: &impl Int8Kernel,
    bytes: &[u8],
    row_bytes: usize,
    start: usize,
    n: usize,
    y: &Shared,
    out_dim: usize,
) {
    // SAFETY: row k, column o of `y`: the caller's.
    let put = |k: usize, o: usize, s: f32| unsafe { *y.get().add(k * out_dim + o) = s };
    let mut weight_rows = bytes.chunks_exact(row_bytes);
    let mut o = start;
    while n == 1 && weight_rows.len() >= 4 {
        let w = std::array::from_fn(|_| weight_rows.next().expect("four rows left"));
        let mut sums = [[0.0]; 4];
        unsafe { kernel.dots(w, [0], &mut sums) };
        sums.iter().enumerate().for_each(|(j, s)| put(0, o + j, s[0]));
        o += 4;
    }
    // On AVX-512 each unpacked block serves eight rows (1.2x four at 16
    // rows, docs/speed.md); AVX2, with half the registers, keeps four.
    let eights = n >= 8 && crate::gguf::dequant::has_avx512_bw();
    for w in weight_rows {
        let mut input = 0;
        if eights {
            input = unsafe { input_groups::<8>(kernel, w, input, n, |k, s| put(k, o, s)) };
        }
        input = unsafe { input_groups::<4>(kernel, w, input, n, |k, s| put(k, o, s)) };
        unsafe { input_groups::<1>(kernel, w, input, n, |k, s| put(k, o, s)) };
        o += 1;
    }
}

/// The products of weight row `w` with input rows `input..n`, `R` at a
/// time while `R` are left, each given to `put`; returns the first row not done.
///
/// # Safety
/// The kernel runs on this CPU.
#[inline(always)]
unsafe fn input_groups<const R: usize>(
    kernel: &impl Int8Kernel,
    w: &[u8],
    mut input: usize,
    n: usize,
    put: impl Fn(usize, f32),
) -> usize {
    while n - input >= R {
        let mut sums = [[0.0; R]];
        unsafe { kernel.dots([w], std::array::from_fn(|k| input + k), &mut sums) };
        sums[0].iter().enumerate().for_each(|(k, &s)| put(input + k, s));
        input += R;
    }
    input
}

/// Whether the AVX-512 kernels run here.
#[cfg(target_arch = "x86_64")]
fn wide() -> bool {
    crate::gguf::dequant::has_avx512_bw()
}

/// Input rows multiplied together with each few dequantized weight rows (2-64 input rows).
#[cfg(target_arch = "x86_64")]
const TILE: usize = 4;

/// `y[r, o..o + O]` for every input row `r` of `x` (`[n, in_dim]`) and the
/// `O` dequantized weight rows `w` (`[O, in_dim]`): `TILE` input rows at a
/// time by [`tile_on`], the rest one by one.
///
/// # Safety
/// AVX-512F if `wide`, else AVX2 and FMA; columns `o..o + O` of `y`
/// (`[n, out_dim]`) are the caller's alone.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tiles<const O: usize>(wide: bool, w: &[f32], x: &[f32], in_dim: usize, y: &Shared, out_dim: usize, o: usize) {
    let n = x.len() / in_dim;
    let put = |r: usize, sums: &[f32; O]| {
        // SAFETY: row r, columns o..o + O of `y`: the caller's.
        unsafe { std::ptr::copy_nonoverlapping(sums.as_ptr(), y.get().add(r * out_dim + o), O) }
    };
    let mut r = 0;
    while n - r >= TILE {
        let mut sums = [[0.0; TILE]; O];
        unsafe { tile_on(wide, w, &x[r * in_dim..(r + TILE) * in_dim], in_dim, &mut sums) };
        (0..TILE).for_each(|k| put(r + k, &std::array::from_fn(|j| sums[j][k])));
        r += TILE;
    }
    for r in r..n {
        let mut sums = [[0.0; 1]; O];
        unsafe { tile_on(wide, w, &x[r * in_dim..(r + 1) * in_dim], in_dim, &mut sums) };
        put(r, &std::array::from_fn(|j| sums[j][0]));
    }
}

/// [`tile`] if `wide`, else [`tile_avx2`].
///
/// # Safety
/// As `tiles`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_on<const O: usize, const R: usize>(
    wide: bool,
    w: &[f32],
    x: &[f32],
    len: usize,
    sums: &mut [[f32; R]; O],
) {
    if wide {
        unsafe { tile(w, x, len, sums) }
    } else {
        unsafe { tile_avx2(w, x, len, sums) }
    }
}

/// `sums[j][k] = w[j] · x[k]` for `O` weight rows and `R` input rows
/// (`len` floats each, a multiple of 16): one sum in flight per pair, loads
/// shared across the tile, every pair reduced by the same tree, so a pair's
/// result does not depend on the tile it is in.
///
/// # Safety
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const O: usize, const R: usize>(w: &[f32], x: &[f32], len: usize, sums: &mut [[f32; R]; O]) {
    use std::arch::x86_64::*;
    assert!(len.is_multiple_of(16) && w.len() >= O * len && x.len() == R * len);
    let (w, x) = (w.as_ptr(), x.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); R]; O];
    for c in (0..len).step_by(16) {
        // SAFETY (loads): c + 16 <= len, within row j of `w` and row k of `x`.
        let xs: [__m512; R] = std::array::from_fn(|k| unsafe { _mm512_loadu_ps(x.add(k * len + c)) });
        for (j, acc) in acc.iter_mut().enumerate() {
            let wv = unsafe { _mm512_loadu_ps(w.add(j * len + c)) };
            for (acc, &xv) in acc.iter_mut().zip(&xs) {
                *acc = _mm512_fmadd_ps(wv, xv, *acc);
            }
        }
    }
    // SAFETY: AVX-512F.
    unsafe { avx512::reduce_all(&acc, sums) };
}

/// [`tile`] on AVX2, eight floats at a time (`O * R` at most twelve sums:
/// sixteen registers); each sum reduced by one fixed tree.
///
/// # Safety
/// AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const O: usize, const R: usize>(w: &[f32], x: &[f32], len: usize, sums: &mut [[f32; R]; O]) {
    use std::arch::x86_64::*;
    assert!(len.is_multiple_of(8) && w.len() >= O * len && x.len() == R * len);
    let (w, x) = (w.as_ptr(), x.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); R]; O];
    for c in (0..len).step_by(8) {
        // SAFETY (loads): c + 8 <= len, within row j of `w` and row k of `x`.
        let xs: [__m256; R] = std::array::from_fn(|k| unsafe { _mm256_loadu_ps(x.add(k * len + c)) });
        for (j, acc) in acc.iter_mut().enumerate() {
            let wv = unsafe { _mm256_loadu_ps(w.add(j * len + c)) };
            for (acc, &xv) in acc.iter_mut().zip(&xs) {
                *acc = _mm256_fmadd_ps(wv, xv, *acc);
            }
        }
    }
    for (acc, sums) in acc.iter().zip(sums.iter_mut()) {
        for (&acc, sum) in acc.iter().zip(sums.iter_mut()) {
            // SAFETY: AVX2.
            *sum = unsafe { avx2::reduce8(acc) };
        }
    }
}

/// Without AVX2: sixteen running sums.
fn dots_plain<const R: usize>(w: &[f32], x: &[f32], sums: &mut [f32]) {
    let len = w.len();
    for (sum, x) in sums.iter_mut().zip(x.chunks_exact(len)).take(R) {
        let mut lanes = [0.0f32; 16];
        for (w, x) in w.chunks_exact(16).zip(x.chunks_exact(16)) {
            for l in 0..16 {
                lanes[l] += w[l] * x[l];
            }
        }
        *sum = lanes.iter().sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequant::dequantize;

    /// The formats kept as blocks that model files use.
    const FORMATS: [GgmlType; 10] = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    /// Random blocks of `ty` whose f16 scales are finite and small.
    fn random_blocks(ty: GgmlType, rows: usize, in_dim: usize, seed: u64) -> Vec<u8> {
        crate::gguf::dequant::testing::random_blocks(ty, rows * in_dim / ty.block_size(), seed)
    }

    fn reference(w: &[f32], x: &[f32], n: usize, in_dim: usize, out: usize) -> Vec<f64> {
        let mut y = vec![0.0; n * out];
        for r in 0..n {
            for o in 0..out {
                y[r * out + o] = (0..in_dim).map(|i| f64::from(x[r * in_dim + i]) * f64::from(w[o * in_dim + i])).sum();
            }
        }
        y
    }

    #[test]
    fn every_format_multiplies_as_its_exact_dequantization() {
        for ty in FORMATS {
            let in_dim = 2 * ty.block_size() + if ty.block_size() == 32 { 32 * 5 } else { 256 };
            let out = 37;
            let bytes = random_blocks(ty, out, in_dim, ty as u64);
            let w = dequantize(ty, &bytes, out * in_dim).unwrap();
            let blocks = BlockWeight::new(ty, out, in_dim, Bytes::Owned(bytes)).unwrap();
            let mut deq = vec![0.0; out * in_dim];
            blocks.dequantize_rows(0..out, &mut deq);
            assert!(deq.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()), "{ty}: dequantized rows differ");
            for n in [1, 3, 4, 9, 70] {
                let x: Vec<f32> = (0..n * in_dim).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
                let want = reference(&w, &x, n, in_dim, out);
                let got = blocks.forward(&Tensor::from_slice(&x).reshape([n as i64, in_dim as i64])).unwrap();
                let got = Vec::<f32>::try_from(got.reshape([-1])).unwrap();
                let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let err = got.iter().zip(&want).fold(0.0f64, |m, (&g, &w)| m.max((f64::from(g) - w).abs()));
                assert!(scale > 0.0 && err <= 1e-5 * scale, "{ty}, {n} rows: error {err} at scale {scale}");
            }
        }
    }

    #[test]
    fn sums_do_not_depend_on_the_thread_count() {
        let (ty, out, in_dim) = (GgmlType::Q4_K, 50, 512);
        let blocks = BlockWeight::new(ty, out, in_dim, Bytes::Owned(random_blocks(ty, out, in_dim, 3))).unwrap();
        let x: Vec<f32> = (0..7 * in_dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let threads = tch::get_num_threads();
        let mut runs = Vec::new();
        for team in [1, 3] {
            tch::set_num_threads(team);
            let (mut one, mut all) = (vec![0.0; out], vec![0.0; 7 * out]);
            blocks.times(&x[..in_dim], 1, &mut one);
            blocks.times(&x, 7, &mut all);
            runs.push((one, all));
        }
        tch::set_num_threads(threads);
        assert_eq!(runs[0], runs[1]);
    }

    #[test]
    fn int8_rows_do_not_depend_on_the_rows_beside_them() {
        // 13 rows go through the kernels in groups of 8 (AVX-512), 4 and 1.
        let in_dim = 512;
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q4_1] {
            let bytes = random_blocks(ty, 9, in_dim, ty as u64);
            let blocks = BlockWeight::new(ty, 9, in_dim, Bytes::Owned(bytes)).unwrap().decoding_as(BlockMode::Int8);
            let x: Vec<f32> = (0..13 * in_dim).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut all = vec![0.0; 13 * 9];
            blocks.decode(&x, 13, &mut all);
            for (r, row) in x.chunks_exact(in_dim).enumerate() {
                let mut one = vec![0.0; 9];
                blocks.decode(row, 1, &mut one);
                assert_eq!(one, all[r * 9..(r + 1) * 9], "{ty}, row {r}");
            }
        }
    }

    #[test]
    fn stacking_and_reordering_move_whole_rows() {
        let in_dim = 64;
        let a = random_blocks(GgmlType::Q8_0, 3, in_dim, 1);
        let b = random_blocks(GgmlType::Q4_0, 2, in_dim, 2);
        let c = random_blocks(GgmlType::Q4_0, 1, in_dim, 3);
        let piece =
            |ty, rows, bytes: &Vec<u8>| BlockWeight::new(ty, rows, in_dim, Bytes::Owned(bytes.clone())).unwrap();
        let stacked = BlockWeight::stack(vec![
            piece(GgmlType::Q8_0, 3, &a),
            piece(GgmlType::Q4_0, 2, &b),
            piece(GgmlType::Q4_0, 1, &c),
        ])
        .unwrap();
        let types: Vec<GgmlType> = stacked.parts.iter().map(|p| p.ty).collect();
        assert_eq!((stacked.out_dim(), types), (6, vec![GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_0]));
        let mut rows = vec![0.0; 6 * in_dim];
        stacked.dequantize_rows(0..6, &mut rows);
        let mut want = dequantize(GgmlType::Q8_0, &a, 3 * in_dim).unwrap();
        want.extend(dequantize(GgmlType::Q4_0, &b, 2 * in_dim).unwrap());
        want.extend(dequantize(GgmlType::Q4_0, &c, in_dim).unwrap());
        assert_eq!(rows, want);
        // One input row through runs of a fused type (Q8_0) and one without a fused kernel (Q4_0).
        let x: Vec<f32> = (0..in_dim).map(|i| (i as f32 * 0.61).cos()).collect();
        let mut got = vec![0.0; 6];
        stacked.times(&x, 1, &mut got);
        for (o, (g, w)) in got.iter().zip(reference(&want, &x, 1, in_dim, 6)).enumerate() {
            assert!((f64::from(*g) - w).abs() < 1e-4, "row {o}: {g} vs {w}");
        }
        let reordered = piece(GgmlType::Q8_0, 3, &a).reorder_rows(&[2, 0, 1]).unwrap();
        let mut got = vec![0.0; 3 * in_dim];
        reordered.dequantize_rows(0..3, &mut got);
        assert_eq!(got[..in_dim], want[2 * in_dim..3 * in_dim]);
        assert_eq!(got[in_dim..2 * in_dim], want[..in_dim]);
        assert!(BlockWeight::new(GgmlType::Q4_0, 2, in_dim, Bytes::Owned(a)).is_err(), "Q8_0 rows are no Q4_0 rows");
        assert!(BlockWeight::new(GgmlType::F16, 1, 2, Bytes::Owned(vec![0; 4])).is_err(), "floats load as tensors");
    }
}
