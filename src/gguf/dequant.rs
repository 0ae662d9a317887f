//! ggml tensor types and their dequantization to f32.
//!
//! Every kernel follows ggml's reference `dequantize_row_*` (ggml-quants.c)
//! operation for operation, so results are bit-exact with ggml and gguf-py.
//! Rust never fuses `a * b + c` into an FMA, which keeps that true.

use std::fmt;

use half::f16;

use crate::error::{EpsvecError, Result};

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
    let kernel =
        kernel(ty).ok_or_else(|| EpsvecError::ModelLoad(format!("dequantizing {ty} tensors is not supported")))?;
    let (block, size) = (ty.block_size(), ty.type_size());
    if n % block != 0 || (n / block).checked_mul(size) != Some(bytes.len()) {
        return Err(EpsvecError::InvalidInput(format!(
            "{ty}: {} bytes do not hold {n} elements in blocks of {block} elements / {size} bytes",
            bytes.len()
        )));
    }
    let mut out = vec![0.0f32; n];
    run(kernel, bytes, &mut out, block, size);
    Ok(out)
}

/// Dequantizes a run of whole blocks: `src` holds exactly the blocks whose
/// elements `dst` receives.
type Kernel = fn(&[u8], &mut [f32]);

/// Tensors with fewer elements are dequantized on the calling thread alone:
/// below this, spawning a thread costs more than it saves.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// Runs `kernel` over all blocks, splitting large tensors over two threads.
fn run(kernel: Kernel, src: &[u8], dst: &mut [f32], block: usize, size: usize) {
    if dst.len() < PARALLEL_MIN_ELEMENTS {
        return kernel(src, dst);
    }
    let half = dst.len() / block / 2;
    let (src0, src1) = src.split_at(half * size);
    let (dst0, dst1) = dst.split_at_mut(half * block);
    std::thread::scope(|s| {
        s.spawn(|| kernel(src0, dst0));
        kernel(src1, dst1);
    });
}

fn kernel(ty: GgmlType) -> Option<Kernel> {
    use GgmlType::*;
    Some(match ty {
        F32 => |s, d| blocks(s, d, f32_elem),
        F16 => |s, d| blocks(s, d, f16_elem),
        BF16 => |s, d| blocks(s, d, bf16_elem),
        Q4_0 => |s, d| blocks(s, d, q4_0),
        Q4_1 => |s, d| blocks(s, d, q4_1),
        Q5_0 => |s, d| blocks(s, d, q5_0),
        Q5_1 => |s, d| blocks(s, d, q5_1),
        Q8_0 => |s, d| blocks(s, d, q8_0),
        Q2_K => |s, d| blocks(s, d, q2_k),
        Q3_K => |s, d| blocks(s, d, q3_k),
        Q4_K => |s, d| blocks(s, d, q4_k),
        Q5_K => |s, d| blocks(s, d, q5_k),
        Q6_K => |s, d| blocks(s, d, q6_k),
        _ => return None,
    })
}

/// Applies a per-block kernel to each `B`-byte block and its `N` outputs.
/// Fixed-size arrays let the compiler drop the bounds checks in the kernels.
#[inline(always)]
fn blocks<const B: usize, const N: usize>(src: &[u8], dst: &mut [f32], f: impl Fn(&[u8; B], &mut [f32; N])) {
    for (b, y) in src.chunks_exact(B).zip(dst.chunks_exact_mut(N)) {
        // Chunks are exactly B and N long, so both conversions succeed.
        if let (Some(b), Some(y)) = (b.first_chunk(), y.first_chunk_mut()) {
            f(b, y);
        }
    }
}

/// The little-endian f16 at byte `i`, widened to f32.
#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// F32: 4 little-endian bytes.
fn f32_elem(b: &[u8; 4], y: &mut [f32; 1]) {
    y[0] = f32::from_le_bytes(*b);
}

/// F16: 2 little-endian bytes of IEEE half.
fn f16_elem(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = f16_at(b, 0);
}

/// BF16: the top 16 bits of an f32. Shifted by hand, as ggml does, because
/// `half::bf16::to_f32` sets the quiet bit of NaNs.
fn bf16_elem(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16);
}

/// Q4_0: f16 d, 16 bytes of nibbles (low nibbles are elements 0..16, high
/// nibbles 16..32); x = d * (q - 8).
fn q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..].iter().enumerate() {
        y[j] = (i32::from(q & 0x0F) - 8) as f32 * d;
        y[j + 16] = (i32::from(q >> 4) - 8) as f32 * d;
    }
}

/// Q4_1: f16 d, f16 m, 16 bytes of nibbles (low nibbles are elements 0..16,
/// high nibbles 16..32); x = d * q + m.
fn q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (j, &q) in b[4..].iter().enumerate() {
        y[j] = f32::from(q & 0x0F) * d + m;
        y[j + 16] = f32::from(q >> 4) * d + m;
    }
}

/// Low 4 bits from a nibble, 5th bit from bit `j` of `qh`: a 5-bit quant.
#[inline(always)]
fn q5(nibble: u8, qh: u32, j: usize) -> i32 {
    i32::from(nibble) | (((qh >> j) & 1) << 4) as i32
}

/// Q5_0: f16 d, u32 of high bits (bit j for element j), 16 bytes of low
/// nibbles laid out as in Q4_0; x = d * (q - 16).
fn q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, &q) in b[6..].iter().enumerate() {
        y[j] = (q5(q & 0x0F, qh, j) - 16) as f32 * d;
        y[j + 16] = (q5(q >> 4, qh, j + 16) - 16) as f32 * d;
    }
}

/// Q5_1: f16 d, f16 m, u32 of high bits, 16 bytes of low nibbles laid out as
/// in Q4_0; x = d * q + m.
fn q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, &q) in b[8..].iter().enumerate() {
        y[j] = q5(q & 0x0F, qh, j) as f32 * d + m;
        y[j + 16] = q5(q >> 4, qh, j + 16) as f32 * d + m;
    }
}

/// Q8_0: f16 d, 32 i8 quants; x = d * q.
fn q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..]) {
        *y = f32::from(q as i8) * d;
    }
}

/// Q2_K: 16 bytes of 4-bit (scale | min << 4), 64 bytes of 2-bit quants,
/// f16 d, f16 dmin; x = d * scale * q - dmin * min per 16 elements.
/// Each 32 quant bytes feed 128 elements: four 2-bit planes, lowest first.
fn q2_k(b: &[u8; 84], y: &mut [f32; 256]) {
    let (scales, qs) = (&b[..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for (i, y) in y.chunks_exact_mut(16).enumerate() {
        let (half, plane, part) = (i / 8, (i / 2) % 4, i % 2);
        let sc = scales[i];
        let (dl, ml) = (d * f32::from(sc & 0x0F), dmin * f32::from(sc >> 4));
        let q = &qs[32 * half + 16 * part..][..16];
        for (y, &q) in y.iter_mut().zip(q) {
            *y = dl * f32::from((q >> (2 * plane)) & 3) - ml;
        }
    }
}

/// Q3_K: 32 bytes of high-bit masks, 64 bytes of low 2-bit quants, 12 bytes
/// of sixteen 6-bit scales, f16 d; x = d * (scale - 32) * (q - 4 if the mask
/// bit is clear). Quants are laid out as in Q2_K; mask bit k serves plane k.
fn q3_k(b: &[u8; 110], y: &mut [f32; 256]) {
    let (hmask, qs, s) = (&b[..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    for (i, y) in y.chunks_exact_mut(16).enumerate() {
        let (half, plane, part) = (i / 8, (i / 2) % 4, i % 2);
        // Low 4 bits: nibbles of bytes 0..8; high 2 bits: 2-bit fields of 8..12.
        let low = if i < 8 { s[i] & 0x0F } else { s[i - 8] >> 4 };
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        let dl = d * f32::from((low | (high << 4)) as i8 - 32);
        let off = 16 * part;
        let q = &qs[32 * half + off..][..16];
        let mask_bit = 1u8 << (4 * half + plane);
        for ((y, &q), &h) in y.iter_mut().zip(q).zip(&hmask[off..off + 16]) {
            let sub = if h & mask_bit != 0 { 0 } else { 4 };
            *y = dl * f32::from(((q >> (2 * plane)) & 3) as i8 - sub);
        }
    }
}

/// Scale and min of sub-block `j` from the 12 packed bytes of Q4_K / Q5_K
/// (ggml's `get_scale_min_k4`): eight 6-bit scales and eight 6-bit mins.
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    };
    (f32::from(sc), f32::from(m))
}

/// Q4_K: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of
/// nibbles (each 32 bytes: low nibbles are one 32-element sub-block, high
/// nibbles the next); x = d * scale * q - dmin * min.
fn q4_k(b: &[u8; 144], y: &mut [f32; 256]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..]);
    for (g, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let (lo, hi) = y.split_at_mut(32);
        for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(q) {
            *lo = d1 * f32::from(q & 0x0F) - m1;
            *hi = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// Q5_K: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 32 bytes of high
/// bits (bit k for sub-block k), 128 bytes of nibbles laid out as in Q4_K;
/// x = d * scale * q - dmin * min.
fn q5_k(b: &[u8; 176], y: &mut [f32; 256]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..]);
    for (g, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
        let (lo, hi) = y.split_at_mut(32);
        for (((lo, hi), &q), &h) in lo.iter_mut().zip(hi).zip(q).zip(qh) {
            let h1 = if h & u1 != 0 { 16 } else { 0 };
            let h2 = if h & u2 != 0 { 16 } else { 0 };
            *lo = d1 * f32::from((q & 0x0F) + h1) - m1;
            *hi = d2 * f32::from((q >> 4) + h2) - m2;
        }
    }
}

/// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 i8
/// scales, f16 d; x = d * scale * (q - 32) per 16 elements. Each 128
/// elements take 64 low-nibble bytes and 32 high-part bytes.
fn q6_k(b: &[u8; 210], y: &mut [f32; 256]) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for (half, y) in y.chunks_exact_mut(128).enumerate() {
        let ql = &ql[64 * half..][..64];
        let qh = &qh[32 * half..][..32];
        let sc = &scales[8 * half..][..8];
        for l in 0..32 {
            let is = l / 16;
            let h = qh[l];
            let q = [
                (ql[l] & 0x0F) | ((h & 3) << 4),
                (ql[l + 32] & 0x0F) | (((h >> 2) & 3) << 4),
                (ql[l] >> 4) | (((h >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((h >> 6) & 3) << 4),
            ];
            for (k, q) in q.into_iter().enumerate() {
                let scale = f32::from(sc[is + 2 * k] as i8);
                y[l + 32 * k] = d * scale * f32::from(q as i8 - 32);
            }
        }
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
        kernel(GgmlType::Q4_1).unwrap()(&bytes, &mut serial);
        assert_eq!(all.len(), serial.len());
        assert!(all.iter().zip(&serial).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
