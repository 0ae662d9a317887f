//! ggml tensor types and their dequantization to f32.
//!
//! Every kernel follows ggml's reference `dequantize_row_*` (ggml-quants.c)
//! operation for operation, so results are bit-exact with ggml and gguf-py.
//! Rust never fuses `a * b + c` into an FMA, which keeps that true.

use std::fmt;

use crate::error::{EpsvecError, Result};

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod q8_32;
pub mod q8k;

/// Declares [`GgmlType`] from one row per type: ggml id, elements per block,
/// bytes per block (ggml.h / gguf-py `GGML_QUANT_SIZES`).
macro_rules! ggml_types {
    ($($name:ident = $id:literal, $block:expr, $size:expr;)*) => {
        /// A tensor element type, numbered as in ggml's `enum ggml_type`.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum GgmlType { $($name = $id),* }

        impl GgmlType {
            /// The type with ggml id `id`; `None` for ids ggml never assigned
            /// or has since removed (4, 5, 31-33, 36-38).
            pub fn from_id(id: u32) -> Option<Self> {
                match id { $($id => Some(Self::$name),)* _ => None }
            }

            /// ggml's name for the type, e.g. "Q4_K".
            pub fn name(self) -> &'static str {
                match self { $(Self::$name => stringify!($name),)* }
            }

            /// Elements per block.
            pub fn block_size(self) -> usize {
                match self { $(Self::$name => $block,)* }
            }

            /// Bytes per block.
            pub fn type_size(self) -> usize {
                match self { $(Self::$name => $size,)* }
            }
        }
    };
}

/// Elements per k-quant super-block.
const QK_K: usize = 256;

ggml_types! {
    F32 = 0, 1, 4;
    F16 = 1, 1, 2;
    Q4_0 = 2, 32, 2 + 16;
    Q4_1 = 3, 32, 2 + 2 + 16;
    Q5_0 = 6, 32, 2 + 4 + 16;
    Q5_1 = 7, 32, 2 + 2 + 4 + 16;
    Q8_0 = 8, 32, 2 + 32;
    Q8_1 = 9, 32, 4 + 4 + 32;
    Q2_K = 10, QK_K, 2 + 2 + QK_K / 16 + QK_K / 4;
    Q3_K = 11, QK_K, 2 + QK_K / 4 + QK_K / 8 + 12;
    Q4_K = 12, QK_K, 2 + 2 + QK_K / 2 + 12;
    Q5_K = 13, QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12;
    Q6_K = 14, QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16;
    Q8_K = 15, QK_K, 4 + QK_K + QK_K / 8;
    IQ2_XXS = 16, QK_K, 2 + QK_K / 4;
    IQ2_XS = 17, QK_K, 2 + QK_K / 4 + QK_K / 32;
    IQ3_XXS = 18, QK_K, 2 + QK_K / 4 + QK_K / 8;
    IQ1_S = 19, QK_K, 2 + QK_K / 8 + QK_K / 16;
    IQ4_NL = 20, 32, 2 + 16;
    IQ3_S = 21, QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4;
    IQ2_S = 22, QK_K, 2 + QK_K / 4 + QK_K / 16;
    IQ4_XS = 23, QK_K, 2 + 2 + QK_K / 2 + QK_K / 64;
    I8 = 24, 1, 1;
    I16 = 25, 1, 2;
    I32 = 26, 1, 4;
    I64 = 27, 1, 8;
    F64 = 28, 1, 8;
    IQ1_M = 29, QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32;
    BF16 = 30, 1, 2;
    TQ1_0 = 34, QK_K, 2 + 4 * 13;
    TQ2_0 = 35, QK_K, 2 + 64;
    MXFP4 = 39, 32, 1 + 16;
    NVFP4 = 40, 64, 4 + 32;
    Q1_0 = 41, 128, 2 + 16;
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Dequantizes `n` elements of type `ty` stored in `bytes` (exactly
/// `n / block_size` blocks) into row-major f32.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    if !dequantizes(ty) {
        return Err(EpsvecError::ModelLoad(format!("dequantizing {ty} tensors is not supported")));
    }
    let (block, size) = (ty.block_size(), ty.type_size());
    if !n.is_multiple_of(block) || (n / block).checked_mul(size) != Some(bytes.len()) {
        return Err(EpsvecError::InvalidInput(format!(
            "{ty}: {} bytes do not hold {n} elements in blocks of {block} elements / {size} bytes",
            bytes.len()
        )));
    }
    let mut out = vec![0.0f32; n];
    run(ty, bytes, &mut out, block, size);
    Ok(out)
}

/// Tensors with fewer elements are dequantized on the calling thread alone:
/// below this, spawning a thread costs more than it saves.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// Dequantizes all blocks, splitting large tensors over two threads.
fn run(ty: GgmlType, src: &[u8], dst: &mut [f32], block: usize, size: usize) {
    if dst.len() < PARALLEL_MIN_ELEMENTS {
        return dequantize_blocks(ty, src, dst);
    }
    let half = dst.len() / block / 2;
    let (src0, src1) = src.split_at(half * size);
    let (dst0, dst1) = dst.split_at_mut(half * block);
    std::thread::scope(|s| {
        s.spawn(|| dequantize_blocks(ty, src0, dst0));
        dequantize_blocks(ty, src1, dst1);
    });
}

/// Whether [`dequantize_blocks`] handles `ty`.
pub fn dequantizes(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K)
}

/// Dequantizes a run of whole blocks of `ty` (one that [`dequantizes`]):
/// `src` holds exactly the blocks whose elements `dst` receives. Inlined,
/// so callers compiled for wider vector units get the kernels compiled so.
#[inline(always)]
pub fn dequantize_blocks(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    use GgmlType::*;
    fn floats(src: &[u8], dst: &mut [f32], size: usize, f: impl Fn(&[u8]) -> f32) {
        for (y, b) in dst.iter_mut().zip(src.chunks_exact(size)) {
            *y = f(b);
        }
    }
    match ty {
        F32 => floats(src, dst, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        F16 => floats(src, dst, 2, |b| f16_at(b, 0)),
        // The top 16 bits of an f32, shifted by hand as ggml does
        // (`half::bf16::to_f32` sets the quiet bit of NaNs).
        BF16 => floats(src, dst, 2, |b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)),
        _ => dequantize_quantized(ty, src, dst),
    }
}

/// The little-endian IEEE half at byte `i`, widened to f32: by F16C where
/// the CPU has it (one instruction once inlined into a caller compiled for
/// it, as the block kernels are; `half` makes a call), else by `half`.
#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    let h = u16::from_le_bytes([b[i], b[i + 1]]);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("f16c") {
            use std::arch::x86_64::{_mm_cvtph_ps, _mm_cvtsi32_si128, _mm_cvtss_f32};
            // SAFETY: the CPU has F16C.
            return unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h)))) };
        }
    }
    half::f16::from_bits(h).to_f32()
}

/// Stores `values` at `y[at..at + 16]`. The kernels below compute each
/// value as ggml does, sixteen at a time: a shape the compiler vectorises.
#[inline(always)]
fn put(y: &mut [f32], at: usize, values: [f32; 16]) {
    y[at..at + 16].copy_from_slice(&values);
}

/// Sixteen values from `f(j)`, `j` in `0..16` (a plain loop: it inlines
/// and vectorises where `std::array::from_fn` does not).
#[inline(always)]
fn sixteen(f: impl Fn(usize) -> f32) -> [f32; 16] {
    let mut values = [0.0; 16];
    for (j, v) in values.iter_mut().enumerate() {
        *v = f(j);
    }
    values
}

/// Dequantizes the whole blocks of quantized type `ty` (block size 32 or
/// 256, one that [`dequantizes`]) in `src` into `y`.
#[inline(always)]
fn dequantize_quantized(ty: GgmlType, src: &[u8], y: &mut [f32]) {
    macro_rules! each_block {
        ($kernel:ident, $bytes:literal, $n:literal) => {
            for (i, b) in src.chunks_exact($bytes).enumerate() {
                if let Some(b) = b.first_chunk::<$bytes>() {
                    $kernel(b, i * $n, y);
                }
            }
        };
    }
    use GgmlType::*;
    match ty {
        Q4_0 => each_block!(q4_0, 18, 32),
        Q4_1 => each_block!(q4_1, 20, 32),
        Q5_0 => each_block!(q5_0, 22, 32),
        Q5_1 => each_block!(q5_1, 24, 32),
        Q8_0 => each_block!(q8_0, 34, 32),
        Q2_K => each_block!(q2_k, 84, 256),
        Q3_K => each_block!(q3_k, 110, 256),
        Q4_K => each_block!(q4_k, 144, 256),
        Q5_K => each_block!(q5_k, 176, 256),
        Q6_K => each_block!(q6_k, 210, 256),
        _ => debug_assert!(false, "{ty} has no block kernel"),
    }
}

/// Q4_0: f16 d, 16 bytes of nibbles (low nibbles are elements 0..16, high
/// nibbles 16..32); x = d * (q - 8).
#[inline(always)]
fn q4_0(b: &[u8; 18], at: usize, y: &mut [f32]) {
    let (d, q) = (f16_at(b, 0), &b[2..]);
    put(y, at, sixteen(|j| (i32::from(q[j] & 0x0F) - 8) as f32 * d));
    put(y, at + 16, sixteen(|j| (i32::from(q[j] >> 4) - 8) as f32 * d));
}

/// Q4_1: f16 d, f16 m, 16 bytes of nibbles (low nibbles are elements 0..16,
/// high nibbles 16..32); x = d * q + m.
#[inline(always)]
fn q4_1(b: &[u8; 20], at: usize, y: &mut [f32]) {
    let (d, m, q) = (f16_at(b, 0), f16_at(b, 2), &b[4..]);
    put(y, at, sixteen(|j| f32::from(q[j] & 0x0F) * d + m));
    put(y, at + 16, sixteen(|j| f32::from(q[j] >> 4) * d + m));
}

/// Low 4 bits from a nibble, 5th bit from bit `j` of `qh`: a 5-bit quant.
#[inline(always)]
fn q5(nibble: u8, qh: u32, j: usize) -> i32 {
    i32::from(nibble) | (((qh >> j) & 1) << 4) as i32
}

/// Q5_0: f16 d, u32 of high bits (bit j for element j), 16 bytes of low
/// nibbles laid out as in Q4_0; x = d * (q - 16).
#[inline(always)]
fn q5_0(b: &[u8; 22], at: usize, y: &mut [f32]) {
    let (d, qh, q) = (f16_at(b, 0), u32::from_le_bytes([b[2], b[3], b[4], b[5]]), &b[6..]);
    put(y, at, sixteen(|j| (q5(q[j] & 0x0F, qh, j) - 16) as f32 * d));
    put(y, at + 16, sixteen(|j| (q5(q[j] >> 4, qh, j + 16) - 16) as f32 * d));
}

/// Q5_1: f16 d, f16 m, u32 of high bits, 16 bytes of low nibbles laid out as
/// in Q4_0; x = d * q + m.
#[inline(always)]
fn q5_1(b: &[u8; 24], at: usize, y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let (qh, q) = (u32::from_le_bytes([b[4], b[5], b[6], b[7]]), &b[8..]);
    put(y, at, sixteen(|j| q5(q[j] & 0x0F, qh, j) as f32 * d + m));
    put(y, at + 16, sixteen(|j| q5(q[j] >> 4, qh, j + 16) as f32 * d + m));
}

/// Q8_0: f16 d, 32 i8 quants; x = d * q.
#[inline(always)]
fn q8_0(b: &[u8; 34], at: usize, y: &mut [f32]) {
    let (d, q) = (f16_at(b, 0), &b[2..]);
    put(y, at, sixteen(|j| f32::from(q[j] as i8) * d));
    put(y, at + 16, sixteen(|j| f32::from(q[16 + j] as i8) * d));
}

/// Q2_K: 16 bytes of 4-bit (scale | min << 4), 64 bytes of 2-bit quants,
/// f16 d, f16 dmin; x = d * scale * q - dmin * min per 16 elements.
/// Each 32 quant bytes feed 128 elements: four 2-bit planes, lowest first.
#[inline(always)]
fn q2_k(b: &[u8; 84], at: usize, y: &mut [f32]) {
    let (scales, qs) = (&b[..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for (i, &sc) in scales.iter().enumerate() {
        let (half, plane, part) = (i / 8, (i / 2) % 4, i % 2);
        let (dl, ml) = (d * f32::from(sc & 0x0F), dmin * f32::from(sc >> 4));
        let q = &qs[32 * half + 16 * part..][..16];
        put(y, at + 16 * i, sixteen(|j| dl * f32::from((q[j] >> (2 * plane)) & 3) - ml));
    }
}

/// Q3_K: 32 bytes of high-bit masks, 64 bytes of low 2-bit quants, 12 bytes
/// of sixteen 6-bit scales, f16 d; x = d * (scale - 32) * (q - 4 if the mask
/// bit is clear). Quants are laid out as in Q2_K; mask bit k serves plane k.
#[inline(always)]
fn q3_k(b: &[u8; 110], at: usize, y: &mut [f32]) {
    let (hmask, qs, s) = (&b[..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    for i in 0..16 {
        let (half, plane, part) = (i / 8, (i / 2) % 4, i % 2);
        // Low 4 bits: nibbles of bytes 0..8; high 2 bits: 2-bit fields of 8..12.
        let low = if i < 8 { s[i] & 0x0F } else { s[i - 8] >> 4 };
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        let dl = d * f32::from((low | (high << 4)) as i8 - 32);
        let off = 16 * part;
        let (q, h) = (&qs[32 * half + off..][..16], &hmask[off..off + 16]);
        let mask_bit = 1u8 << (4 * half + plane);
        put(
            y,
            at + 16 * i,
            sixteen(|j| {
                let sub = if h[j] & mask_bit != 0 { 0 } else { 4 };
                dl * f32::from(((q[j] >> (2 * plane)) & 3) as i8 - sub)
            }),
        );
    }
}

/// Scale and min of sub-block `j` from the 12 packed bytes of Q4_K / Q5_K
/// (ggml's `get_scale_min_k4`): eight 6-bit scales and eight 6-bit mins.
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (sc, m) = scale_min_k4_codes(j, q);
    (f32::from(sc), f32::from(m))
}

/// The 6-bit scale and minimum of sub-block `j` of a Q4_K/Q5_K block.
#[inline(always)]
fn scale_min_k4_codes(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q4_K: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of
/// nibbles (each 32 bytes: low nibbles are one 32-element sub-block, high
/// nibbles the next); x = d * scale * q - dmin * min.
#[inline(always)]
fn q4_k(b: &[u8; 144], at: usize, y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..]);
    for (g, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        for h in 0..2 {
            let q = &q[16 * h..][..16];
            put(y, at + 64 * g + 16 * h, sixteen(|j| d1 * f32::from(q[j] & 0x0F) - m1));
            put(y, at + 64 * g + 32 + 16 * h, sixteen(|j| d2 * f32::from(q[j] >> 4) - m2));
        }
    }
}

/// Q5_K: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 32 bytes of high
/// bits (bit k for sub-block k), 128 bytes of nibbles laid out as in Q4_K;
/// x = d * scale * q - dmin * min.
#[inline(always)]
fn q5_k(b: &[u8; 176], at: usize, y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..]);
    for (g, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
        for h in 0..2 {
            let (q, qh) = (&q[16 * h..][..16], &qh[16 * h..][..16]);
            let bit = |j: usize, u: u8| if qh[j] & u != 0 { 16 } else { 0 };
            put(y, at + 64 * g + 16 * h, sixteen(|j| d1 * f32::from((q[j] & 0x0F) + bit(j, u1)) - m1));
            put(y, at + 64 * g + 32 + 16 * h, sixteen(|j| d2 * f32::from((q[j] >> 4) + bit(j, u2)) - m2));
        }
    }
}

/// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 i8
/// scales, f16 d; x = d * scale * (q - 32) per 16 elements. Each 128
/// elements take 64 low-nibble bytes and 32 high-part bytes: element
/// l + 32k (l < 32) has the low (k < 2) or high nibble of byte l + 32 (k % 2)
/// and bits 2k..2k+2 of high-part byte l.
#[inline(always)]
fn q6_k(b: &[u8; 210], at: usize, y: &mut [f32]) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for half in 0..2 {
        let (ql, qh, sc) = (&ql[64 * half..][..64], &qh[32 * half..][..32], &scales[8 * half..][..8]);
        for k in 0..4 {
            for h in 0..2 {
                let scale = f32::from(sc[h + 2 * k] as i8);
                let value = |j: usize| {
                    let l = 16 * h + j;
                    let byte = ql[l + 32 * (k % 2)];
                    let low = if k < 2 { byte & 0x0F } else { byte >> 4 };
                    let q = low | (((qh[l] >> (2 * k)) & 3) << 4);
                    d * scale * f32::from(q as i8 - 32)
                };
                put(y, at + 128 * half + 32 * k + 16 * h, sixteen(value));
            }
        }
    }
}

/// Whether this CPU has AVX-512 F and BW (what the 8-bit kernels use).
pub(crate) fn has_avx512_bw() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX2, FMA and F16C (the 8-bit kernels' narrower form).
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx2") && has!("fma") && has!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Test data: random bytes and blocks (shared by the kernels' tests).
#[cfg(test)]
pub(crate) mod testing {
    use super::GgmlType;

    /// The 8-bit kernels this CPU runs: AVX-512 (`true`) and AVX2 (`false`).
    pub fn int8_kernels() -> Vec<bool> {
        [(true, super::has_avx512_bw()), (false, super::has_avx2())]
            .into_iter()
            .filter_map(|(wide, runs)| runs.then_some(wide))
            .collect()
    }

    /// Deterministic bytes (xorshift64), every bit pattern possible.
    pub fn random_bytes(n: usize, mut state: u64) -> Vec<u8> {
        state |= 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// `count` random blocks of `ty` whose f16 fields (scales, minimums)
    /// are set to 0.01 (random bytes give NaNs and huge values).
    pub fn random_blocks(ty: GgmlType, count: usize, seed: u64) -> Vec<u8> {
        let size = ty.type_size();
        let mut bytes = random_bytes(count * size, seed);
        let scale = half::f16::from_f32(0.01).to_le_bytes();
        for block in bytes.chunks_exact_mut(size) {
            // Every f16 field of these formats sits at a block's start or end.
            let fields: &[usize] = match ty {
                GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
                GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
                GgmlType::Q2_K => &[size - 4, size - 2],
                _ => &[size - 2],
            };
            for &at in fields {
                block[at..at + 2].copy_from_slice(&scale);
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for id in 0..64 {
            if let Some(ty) = GgmlType::from_id(id) {
                assert_eq!(ty as u32, id);
            }
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(31), None);
        assert_eq!(GgmlType::BF16 as u32, 30);
    }

    #[test]
    fn block_sizes_match_ggml() {
        let sizes = [
            (GgmlType::Q4_0, 32, 18),
            (GgmlType::Q4_1, 32, 20),
            (GgmlType::Q5_0, 32, 22),
            (GgmlType::Q5_1, 32, 24),
            (GgmlType::Q8_0, 32, 34),
            (GgmlType::Q2_K, 256, 84),
            (GgmlType::Q3_K, 256, 110),
            (GgmlType::Q4_K, 256, 144),
            (GgmlType::Q5_K, 256, 176),
            (GgmlType::Q6_K, 256, 210),
        ];
        for (ty, block, size) in sizes {
            assert_eq!((ty.block_size(), ty.type_size()), (block, size), "{ty}");
        }
    }

    #[test]
    fn q4_0_low_nibbles_come_first() {
        let mut b = vec![0x00, 0x3C]; // d = 1.0
        b.extend([0x9F; 16]); // low nibble 15, high nibble 9
        let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert!(y[..16].iter().all(|&v| v == 7.0));
        assert!(y[16..].iter().all(|&v| v == 1.0));
    }

    #[test]
    fn f16_widens_as_half_does() {
        for bits in 0..=u16::MAX {
            let theirs = half::f16::from_bits(bits).to_f32();
            let ours = f16_at(&bits.to_le_bytes(), 0);
            let same = ours.to_bits() == theirs.to_bits() || (ours.is_nan() && theirs.is_nan());
            assert!(same, "{bits:#06x}: {ours:e} vs {theirs:e}");
        }
    }

    #[test]
    fn unsupported_type_is_named() {
        let err = dequantize(GgmlType::IQ2_XS, &[0; 74], 256).unwrap_err();
        assert!(err.to_string().contains("IQ2_XS"), "{err}");
    }

    #[test]
    fn size_mismatch_is_an_error() {
        assert!(dequantize(GgmlType::Q8_0, &[0; 33], 32).is_err());
        assert!(dequantize(GgmlType::Q8_0, &[0; 34], 31).is_err());
        assert!(dequantize(GgmlType::F32, &[0; 8], 3).is_err());
        assert!(dequantize(GgmlType::Q6_K, &[], usize::MAX / 256 * 256).is_err());
    }

    #[test]
    fn parallel_split_matches_serial() {
        let n = 4 * PARALLEL_MIN_ELEMENTS + 32;
        let bytes: Vec<u8> = (0..n / 32 * 20).map(|i| (i * 7 % 251) as u8 & 0x3B).collect();
        let all = dequantize(GgmlType::Q4_1, &bytes, n).unwrap();
        let mut serial = vec![0.0; n];
        dequantize_blocks(GgmlType::Q4_1, &bytes, &mut serial);
        assert_eq!(all.len(), serial.len());
        assert!(all.iter().zip(&serial).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
