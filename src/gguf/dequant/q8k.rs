//! Products of K-quant weight rows (Q4_K, Q6_K) with activations quantized
//! to 8 bits, as llama.cpp computes them (its Q8_K): integer dot products
//! on AVX-512 (BW) or AVX2, one float multiply per 256 weights.
//!
//! Numerics: each 256 activations of a row share one scale, `amax / 127`,
//! and round to the nearest integer; the weights are used exactly (their
//! integer codes and scales). Within a 256-value superblock the sums are
//! exact integers; superblocks are added in float32 in a fixed order, so a
//! row's result depends on neither the thread count nor the other rows.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::GgmlType;
#[cfg(target_arch = "x86_64")]
use super::{f16_at, scale_min_k4_codes};

/// Values per superblock, and so per activation scale.
pub const QK: usize = 256;
/// How many weight rows ahead `dots` prefetches.
#[cfg(target_arch = "x86_64")]
const AHEAD: usize = 4;

/// Rows of activations quantized per 256 values.
pub struct Q8Rows {
    in_dim: usize,
    q: Vec<i8>,
    /// One scale per superblock of each row.
    d: Vec<f32>,
    /// The sums of `q` per 16 values (the weights' offsets and minimums
    /// multiply these).
    sums16: Vec<i16>,
}

impl Q8Rows {
    /// Quantizes `x` (`[rows, in_dim]`, `in_dim` a multiple of 256).
    pub fn quantize(x: &[f32], in_dim: usize) -> Self {
        assert!(in_dim.is_multiple_of(QK) && x.len().is_multiple_of(in_dim));
        let mut q = vec![0i8; x.len()];
        let mut d = Vec::with_capacity(x.len() / QK);
        for (x, q) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)) {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let inverse = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            for (q, &v) in q.iter_mut().zip(x) {
                *q = (v * inverse).round().clamp(-127.0, 127.0) as i8;
            }
            d.push(amax / 127.0);
        }
        let sums16 = q.chunks_exact(16).map(|c| c.iter().map(|&v| i16::from(v)).sum()).collect();
        Self { in_dim, q, d, sums16 }
    }

    pub fn rows(&self) -> usize {
        self.q.len() / self.in_dim
    }
}

/// Whether `ty` has a kernel here and this CPU runs it.
pub fn runs(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K) && (super::has_avx512_bw() || super::has_avx2())
}

/// Off x86-64 no type `runs`, so this is never called.
///
/// # Safety
/// None needed.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn dots<const O: usize, const R: usize>(
    ty: GgmlType,
    _: [&[u8]; O],
    _: &Q8Rows,
    _: [usize; R],
    _: &mut [[f32; R]; O],
) {
    unreachable!("no 8-bit kernel for {ty} on this CPU")
}

/// `sums[j][k] = w[j] · x[rows[k]]` for `O` weight rows of `ty` (one part's
/// consecutive rows, whole superblocks) and `R` quantized input rows: one
/// sum in flight per pair, every pair reduced by the same tree, on the
/// widest vector unit this CPU has.
///
/// # Safety
/// `runs(ty)`.
#[cfg(target_arch = "x86_64")]
pub unsafe fn dots<const O: usize, const R: usize>(
    ty: GgmlType,
    w: [&[u8]; O],
    x: &Q8Rows,
    rows: [usize; R],
    sums: &mut [[f32; R]; O],
) {
    let (blocks, size) = (x.in_dim / QK, ty.type_size());
    assert!(w.iter().all(|w| w.len() == blocks * size) && rows.iter().all(|&r| r < x.rows()));
    // SAFETY (both): `runs(ty)`: the CPU has one of the two.
    if super::has_avx512_bw() {
        unsafe { dots_avx512(ty, w, x, rows, sums) }
    } else {
        unsafe { dots_avx2(ty, w, x, rows, sums) }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn dots_avx512<const O: usize, const R: usize>(
    ty: GgmlType,
    w: [&[u8]; O],
    x: &Q8Rows,
    rows: [usize; R],
    sums: &mut [[f32; R]; O],
) {
    let (blocks, size) = (x.in_dim / QK, ty.type_size());
    let mut acc = [[_mm512_setzero_ps(); R]; O];
    macro_rules! each_block {
        ($kernel:ident) => {
            for s in 0..blocks {
                for (w, acc) in w.iter().zip(acc.iter_mut()) {
                    let b = &w[s * size..(s + 1) * size];
                    for line in (0..size).step_by(64) {
                        // A hint only: the same superblock `AHEAD` rows on (rows of a part are consecutive).
                        _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().wrapping_add(AHEAD * w.len() + line) as *const i8);
                    }
                    // SAFETY: `b` is one whole block of `ty`.
                    let block = unsafe { $kernel(b) };
                    for (acc, &r) in acc.iter_mut().zip(&rows) {
                        let at = r * x.in_dim + s * QK;
                        let mut sum = _mm512_setzero_si512();
                        for (g, (&weights, &scales)) in block.weights.iter().zip(&block.scales).enumerate() {
                            // SAFETY: 64 quantized values of row r, inside `x.q`.
                            let values = unsafe { _mm512_loadu_si512(x.q.as_ptr().add(at + 64 * g) as *const _) };
                            sum =
                                _mm512_add_epi32(sum, _mm512_madd_epi16(_mm512_maddubs_epi16(weights, values), scales));
                        }
                        // SAFETY: the row's 16 sums for this superblock, inside `x.sums16`.
                        let sums16 = unsafe { _mm256_loadu_si256(x.sums16.as_ptr().add(at / 16) as *const _) };
                        let offset =
                            _mm512_cvtepi32_ps(_mm512_zextsi256_si512(_mm256_madd_epi16(block.offsets, sums16)));
                        let dx = x.d[at / QK];
                        *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(block.d * dx), *acc);
                        *acc = _mm512_fnmadd_ps(offset, _mm512_set1_ps(block.offset_d * dx), *acc);
                    }
                }
            }
        };
    }
    match ty {
        GgmlType::Q4_K => each_block!(q4_k),
        GgmlType::Q6_K => each_block!(q6_k),
        _ => panic!("{ty} has no 8-bit kernel"),
    }
    // SAFETY: the features are enabled here.
    unsafe { super::avx512::reduce_all(&acc, sums) };
}

/// `dots` on AVX2: each 32 values' codes are unpacked (`q4_k_codes`,
/// `q6_k_codes`) and used at once by every input row, eight lanes wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dots_avx2<const O: usize, const R: usize>(
    ty: GgmlType,
    w: [&[u8]; O],
    x: &Q8Rows,
    rows: [usize; R],
    sums: &mut [[f32; R]; O],
) {
    let (blocks, size) = (x.in_dim / QK, ty.type_size());
    let mut acc = [[_mm256_setzero_ps(); R]; O];
    macro_rules! each_block {
        ($header:ident, $codes:ident) => {
            for s in 0..blocks {
                for (w, acc) in w.iter().zip(acc.iter_mut()) {
                    let b = &w[s * size..(s + 1) * size];
                    for line in (0..size).step_by(64) {
                        // A hint only: the same superblock `AHEAD` rows on (rows of a part are consecutive).
                        _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().wrapping_add(AHEAD * w.len() + line) as *const i8);
                    }
                    // SAFETY (both): `b` is one whole block of `ty`.
                    let header = unsafe { $header(b) };
                    // Scales 0..8 in both 128-bit lanes, and 8..16.
                    let halves = [
                        _mm256_permute2x128_si256::<0x00>(header.scales, header.scales),
                        _mm256_permute2x128_si256::<0x11>(header.scales, header.scales),
                    ];
                    let mut sum = [_mm256_setzero_si256(); R];
                    for v in 0..QK / 32 {
                        let codes = unsafe { $codes(b, v) };
                        // Pair sums 0..8 (values 0..16) take scale 2v, 8..16 scale 2v + 1.
                        let pick = unsafe { _mm256_loadu_si256(SCALE_PAIRS[v % 4].as_ptr() as *const _) };
                        let scales = _mm256_shuffle_epi8(halves[v / 4], pick);
                        for (sum, &r) in sum.iter_mut().zip(&rows) {
                            // SAFETY: 32 quantized values of row r, inside `x.q`.
                            let at = r * x.in_dim + s * QK + 32 * v;
                            let values = unsafe { _mm256_loadu_si256(x.q.as_ptr().add(at) as *const _) };
                            let products = _mm256_madd_epi16(_mm256_maddubs_epi16(codes, values), scales);
                            *sum = _mm256_add_epi32(*sum, products);
                        }
                    }
                    for ((acc, &r), sum) in acc.iter_mut().zip(&rows).zip(sum) {
                        let at = r * x.in_dim + s * QK;
                        // SAFETY: the row's 16 sums for this superblock, inside `x.sums16`.
                        let sums16 = unsafe { _mm256_loadu_si256(x.sums16.as_ptr().add(at / 16) as *const _) };
                        let offset = _mm256_cvtepi32_ps(_mm256_madd_epi16(header.offsets, sums16));
                        let dx = x.d[at / QK];
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(header.d * dx), *acc);
                        *acc = _mm256_fnmadd_ps(offset, _mm256_set1_ps(header.offset_d * dx), *acc);
                    }
                }
            }
        };
    }
    match ty {
        GgmlType::Q4_K => each_block!(q4_k_header, q4_k_codes),
        GgmlType::Q6_K => each_block!(q6_k_header, q6_k_codes),
        _ => panic!("{ty} has no 8-bit kernel"),
    }
    for (acc, sums) in acc.iter().zip(sums.iter_mut()) {
        for (acc, sum) in acc.iter().zip(sums.iter_mut()) {
            // SAFETY: the features are enabled here.
            *sum = unsafe { super::avx2::reduce8(*acc) };
        }
    }
}

/// A superblock's float scales, the 16-bit scale of each 16 values, and what
/// the activations' sums per 16 values are multiplied by (as in `Block`).
#[cfg(target_arch = "x86_64")]
struct Header {
    d: f32,
    offset_d: f32,
    scales: __m256i,
    offsets: __m256i,
}

/// For `shuffle_epi8` on eight 16-bit scales in each 128-bit lane: scale
/// 2k in every pair of the low lane, 2k + 1 in the high lane.
const SCALE_PAIRS: [[u8; 32]; 4] = {
    let mut pick = [[0u8; 32]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 32 {
            let element = 2 * k + i / 16;
            pick[k][i] = (2 * (element % 8) + i % 2) as u8;
            i += 1;
        }
        k += 1;
    }
    pick
};

/// Eight 8-bit codes, each repeated (one per 16 values), as 16-bit lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn per_16_values(codes: u64) -> __m256i {
    let eight = _mm_cvtsi64_si128(codes as i64);
    _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(eight, eight))
}

/// Q4_K's eight 6-bit scales and eight 6-bit mins (`scale_min_k4_codes`),
/// unpacked four at a time as ggml's AVX2 code does.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q4_k_header(b: &[u8]) -> Header {
    let word = |i: usize| u32::from_le_bytes([b[4 + 4 * i], b[5 + 4 * i], b[6 + 4 * i], b[7 + 4 * i]]);
    let (w0, w1, w2) = (word(0), word(1), word(2));
    let (six, four, two) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
    let scales = u64::from(w0 & six) | u64::from((w2 & four) | ((w0 >> 6) & two) << 4) << 32;
    let mins = u64::from(w1 & six) | u64::from(((w2 >> 4) & four) | ((w1 >> 6) & two) << 4) << 32;
    // SAFETY (both): the features are the caller's.
    let (scales, offsets) = unsafe { (per_16_values(scales), per_16_values(mins)) };
    Header { d: f16_at(b, 0), offset_d: f16_at(b, 2), scales, offsets }
}

/// Q4_K codes `32 v..32 v + 32`: low nibbles of bytes `32 (v / 2)..` for even `v`, high for odd.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q4_k_codes(b: &[u8], v: usize) -> __m256i {
    let q = unsafe { _mm256_loadu_si256(b[16 + 32 * (v / 2)..].as_ptr() as *const _) };
    let q = if v.is_multiple_of(2) { q } else { _mm256_srli_epi16::<4>(q) };
    _mm256_and_si256(q, _mm256_set1_epi8(0x0F))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q6_k_header(b: &[u8]) -> Header {
    let d = f16_at(b, 208);
    let scales = unsafe { _mm256_cvtepi8_epi16(_mm_loadu_si128(b[192..].as_ptr() as *const _)) };
    Header { d, offset_d: 32.0 * d, scales, offsets: scales }
}

/// Q6_K codes `32 v..32 v + 32` (0..64): in each 128, vector k takes the
/// low (k < 2) or high nibbles of low bytes `32 (k % 2)..` and bits 2k..2k+2
/// of the 32 high bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q6_k_codes(b: &[u8], v: usize) -> __m256i {
    let (half, k) = (v / 4, v % 4);
    let low = unsafe { _mm256_loadu_si256(b[64 * half + 32 * (k % 2)..].as_ptr() as *const _) };
    let high = unsafe { _mm256_loadu_si256(b[128 + 32 * half..].as_ptr() as *const _) };
    let nibbles = if k < 2 { low } else { _mm256_srli_epi16::<4>(low) };
    let nibbles = _mm256_and_si256(nibbles, _mm256_set1_epi8(0x0F));
    let top = _mm256_and_si256(_mm256_srl_epi16(high, _mm_cvtsi32_si128(2 * k as i32)), _mm256_set1_epi8(0x03));
    _mm256_or_si256(nibbles, _mm256_slli_epi16::<4>(top))
}

#[cfg(target_arch = "x86_64")]
/// One superblock ready for the integer products: its 256 codes as four
/// vectors of 64 unsigned bytes in value order, the 16-bit scale of each
/// code pair's sum, and what to subtract: `offset_d * Σ offsets[i] *
/// (sum of the activations' 16 values i)`.
struct Block {
    d: f32,
    offset_d: f32,
    weights: [__m512i; 4],
    scales: [__m512i; 4],
    offsets: __m256i,
}

/// For each vector `g` of 64 values, the scale (of `scales`) of each of its
/// 32 pair sums: `g * per_vector + lane / (32 / per_vector)`.
const fn scale_index<const PER_VECTOR: usize>() -> [[i16; 32]; 4] {
    let mut index = [[0i16; 32]; 4];
    let mut g = 0;
    while g < 4 {
        let mut lane = 0;
        while lane < 32 {
            index[g][lane] = (g * PER_VECTOR + lane / (32 / PER_VECTOR)) as i16;
            lane += 1;
        }
        g += 1;
    }
    index
}

/// Q4_K: 8 scales of 32 values (two per vector); Q6_K: 16 of 16 (four per vector).
const Q4_K_SCALES: [[i16; 32]; 4] = scale_index::<2>();
const Q6_K_SCALES: [[i16; 32]; 4] = scale_index::<4>();

/// The 16-bit scales in `scales` placed on the pair sums of each vector by `index`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn spread(scales: __m512i, index: &[[i16; 32]; 4]) -> [__m512i; 4] {
    let mut out = [_mm512_setzero_si512(); 4];
    for (out, index) in out.iter_mut().zip(index) {
        *out = _mm512_permutexvar_epi16(unsafe { _mm512_loadu_si512(index.as_ptr() as *const _) }, scales);
    }
    out
}

#[cfg(target_arch = "x86_64")]
/// Q4_K: value = d * scale_j * q - dmin * min_j per 32 values (`q` 0..16).
#[inline(always)]
unsafe fn q4_k(b: &[u8]) -> Block {
    let mut scales = [0i16; 8];
    let mut mins = [0i16; 16];
    for j in 0..8 {
        let (sc, m) = scale_min_k4_codes(j, &b[4..16]);
        scales[j] = i16::from(sc);
        mins[2 * j] = i16::from(m);
        mins[2 * j + 1] = i16::from(m);
    }
    let scales = unsafe { _mm512_castsi128_si512(_mm_loadu_si128(scales.as_ptr() as *const _)) };
    let low = _mm256_set1_epi8(0x0F);
    // (Loops, not closures: a closure would not inherit the caller's target features.)
    let mut weights = [_mm512_setzero_si512(); 4];
    for (g, weights) in weights.iter_mut().enumerate() {
        // Each 32 bytes: low nibbles are values 0..32 of 64, high nibbles 32..64.
        let q = unsafe { _mm256_loadu_si256(b[16 + 32 * g..].as_ptr() as *const _) };
        let high = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low);
        *weights = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_and_si256(q, low)), high);
    }
    // Pair sums 0..16 of a 64-value vector take scale 2g, 16..32 scale 2g + 1.
    let scales = unsafe { spread(scales, &Q4_K_SCALES) };
    Block {
        d: f16_at(b, 0),
        offset_d: f16_at(b, 2),
        weights,
        scales,
        offsets: unsafe { _mm256_loadu_si256(mins.as_ptr() as *const _) },
    }
}

#[cfg(target_arch = "x86_64")]
/// Q6_K: value = d * scale_i * (q - 32) per 16 values (`q` 0..64: a nibble
/// and two high bits; see `super::q6_k` for the layout).
#[inline(always)]
unsafe fn q6_k(b: &[u8]) -> Block {
    let low = _mm512_set1_epi8(0x0F);
    let two = _mm512_set1_epi8(0x03);
    let mut weights = [_mm512_setzero_si512(); 4];
    for half in 0..2 {
        let ql = unsafe { _mm512_loadu_si512(b[64 * half..].as_ptr() as *const _) };
        // The 32 high-bit bytes in both halves of the vector.
        let qh = unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(b[128 + 32 * half..].as_ptr() as *const _)) };
        // Values 0..64 of the half: low nibbles, bits 0-1 (first 32) and 2-3 of qh;
        // values 64..128: high nibbles, bits 4-5 and 6-7.
        let nibbles = [_mm512_and_si512(ql, low), _mm512_and_si512(_mm512_srli_epi16::<4>(ql), low)];
        for (part, nibbles) in nibbles.into_iter().enumerate() {
            let shift = 4 * part as i64;
            let shifts = _mm512_setr_epi64(shift, shift, shift, shift, shift + 2, shift + 2, shift + 2, shift + 2);
            let top = _mm512_and_si512(_mm512_srlv_epi64(qh, shifts), two);
            weights[2 * half + part] = _mm512_or_si512(nibbles, _mm512_slli_epi16::<4>(top));
        }
    }
    let codes = unsafe { _mm256_cvtepi8_epi16(_mm_loadu_si128(b[192..].as_ptr() as *const _)) };
    let wide = _mm512_castsi256_si512(codes);
    // Pair sums 8k..8k + 8 of vector g take scale 4g + k.
    let scales = unsafe { spread(wide, &Q6_K_SCALES) };
    let d = f16_at(b, 208);
    Block { d, offset_d: 32.0 * d, weights, scales, offsets: codes }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::gguf::dequant::dequantize;
    use crate::gguf::dequant::testing::random_blocks;

    unsafe fn dots_on<const O: usize, const R: usize>(
        wide: bool,
        ty: GgmlType,
        w: [&[u8]; O],
        x: &Q8Rows,
        rows: [usize; R],
        sums: &mut [[f32; R]; O],
    ) {
        if wide {
            unsafe { dots_avx512(ty, w, x, rows, sums) }
        } else {
            unsafe { dots_avx2(ty, w, x, rows, sums) }
        }
    }

    #[test]
    fn dots_are_the_exact_products_with_the_rounded_activations() {
        let in_dim = 3 * QK;
        for wide in crate::gguf::dequant::testing::int8_kernels() {
            for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
                let w_bytes = random_blocks(ty, 2 * in_dim / QK, ty as u64);
                let w = dequantize(ty, &w_bytes, 2 * in_dim).unwrap();
                // Rows with an outlier, a zero superblock and ordinary values.
                let mut x: Vec<f32> = (0..5 * in_dim).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
                x[7] = 300.0;
                x[in_dim + QK..in_dim + 2 * QK].fill(0.0);
                let q = Q8Rows::quantize(&x, in_dim);
                for (o, w_row) in w_bytes.chunks_exact(w_bytes.len() / 2).enumerate() {
                    let mut got = [[0.0f32; 4]];
                    unsafe { dots_on(wide, ty, [w_row], &q, [4, 0, 2, 1], &mut got) };
                    let got = got[0];
                    let mut alone = [[0.0f32]; 2];
                    unsafe { dots_on(wide, ty, [w_row, w_row], &q, [2], &mut alone) };
                    assert_eq!(alone[1][0].to_bits(), got[2].to_bits(), "{ty}: a row's sum depends on its group");
                    for (k, r) in [4, 0, 2, 1].into_iter().enumerate() {
                        let weights = &w[o * in_dim..(o + 1) * in_dim];
                        // The same product in float64 with the rounded activations...
                        let want: f64 = (0..in_dim)
                            .map(|i| {
                                f64::from(weights[i])
                                    * f64::from(q.q[r * in_dim + i])
                                    * f64::from(q.d[(r * in_dim + i) / QK])
                            })
                            .sum();
                        let scale: f64 =
                            (0..in_dim).map(|i| f64::from(weights[i]).abs() * f64::from(x[r * in_dim + i]).abs()).sum();
                        assert!((f64::from(got[k]) - want).abs() <= 1e-5 * scale, "{ty} row {r}: {} vs {want}", got[k]);
                        // ... and within half a quantization step of each activation of the exact one.
                        let exact: f64 =
                            (0..in_dim).map(|i| f64::from(weights[i]) * f64::from(x[r * in_dim + i])).sum();
                        let bound: f64 = (0..in_dim)
                            .map(|i| f64::from(weights[i]).abs() * f64::from(q.d[(r * in_dim + i) / QK]) / 2.0)
                            .sum();
                        assert!((f64::from(got[k]) - exact).abs() <= bound + 1e-5 * scale, "{ty} row {r}");
                    }
                }
            }
        }
    }
}
