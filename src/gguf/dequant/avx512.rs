//! AVX-512 kernels for the block formats the named models hold (Q4_1, Q5_0,
//! Q8_0, Q4_K, Q6_K), sixteen values per instruction. Each computes what
//! the portable kernel computes, operation for operation (multiply, then
//! add or subtract, never fused), so results are bit-identical; the tests
//! check that. Other types take the portable kernels.

use std::arch::x86_64::*;

use super::{dequantize_blocks as portable, scale_min_k4, GgmlType};

/// Hands each block's values to `put(index in the run, sixteen values)`;
/// `false` for a type without a kernel here.
#[inline(always)]
unsafe fn each_value(ty: GgmlType, src: &[u8], mut put: impl FnMut(usize, __m512)) -> bool {
    macro_rules! each_block {
        ($kernel:ident, $bytes:literal, $n:literal) => {
            for (i, b) in src.chunks_exact($bytes).enumerate() {
                // SAFETY: `b` is one whole block.
                unsafe { $kernel(b, |at, v| put(i * $n + at, v)) }
            }
        };
    }
    match ty {
        GgmlType::Q4_1 => each_block!(q4_1, 20, 32),
        GgmlType::Q5_0 => each_block!(q5_0, 22, 32),
        GgmlType::Q8_0 => each_block!(q8_0, 34, 32),
        GgmlType::Q4_K => each_block!(q4_k, 144, 256),
        GgmlType::Q6_K => each_block!(q6_k, 210, 256),
        _ => return false,
    }
    true
}

/// `super::dequantize_blocks` on AVX-512.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512BW.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub unsafe fn dequantize_blocks(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    assert!(dst.len() == src.len() / ty.type_size() * ty.block_size());
    let y = dst.as_mut_ptr();
    // SAFETY: `at + 16 <= dst.len()` for every value of whole blocks.
    if !unsafe { each_value(ty, src, |at, v| _mm512_storeu_ps(y.add(at), v)) } {
        portable(ty, src, dst);
    }
}

/// `sums[r] = ` the dot product of weight row `rows[r]` with `x`, for `R`
/// consecutive rows of one type, `row_bytes` apart in memory; `false` for a
/// type without a kernel. Each value is used from the register it is
/// dequantized into. The rows share each block step (their sums are
/// independent chains, two per row alternating every sixteen values, so the
/// FMA's latency is hidden), the next rows' bytes are prefetched, and the
/// sums are reduced by [`reduce4`], so a row's result does not depend on `R`
/// or its place in the group.
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub unsafe fn dots<const R: usize>(ty: GgmlType, rows: [&[u8]; R], x: &[f32], sums: &mut [f32; R]) -> bool {
    let row_bytes = rows[0].len();
    assert!(x.len() == row_bytes / ty.type_size() * ty.block_size() && rows.iter().all(|r| r.len() == row_bytes));
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let x = x.as_ptr();
    macro_rules! each_block {
        ($kernel:ident, $bytes:literal, $n:literal) => {
            for i in 0..row_bytes / $bytes {
                for (r, row) in rows.iter().enumerate() {
                    let b = &row[i * $bytes..(i + 1) * $bytes];
                    for line in (0..$bytes).step_by(64) {
                        // A hint only: the same bytes of the row `R` on, past the end at the last rows.
                        _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().wrapping_add(R * row_bytes + line) as *const i8);
                    }
                    // SAFETY: `b` is one whole block; `x` holds the row's values, `at + 16` at most `$n`.
                    unsafe {
                        $kernel(b, |at, v| {
                            let chain = (at >> 4) & 1;
                            acc[r][chain] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x.add(i * $n + at)), acc[r][chain]);
                        })
                    }
                }
            }
        };
    }
    match ty {
        GgmlType::Q4_1 => each_block!(q4_1, 20, 32),
        GgmlType::Q5_0 => each_block!(q5_0, 22, 32),
        GgmlType::Q8_0 => each_block!(q8_0, 34, 32),
        GgmlType::Q4_K => each_block!(q4_k, 144, 256),
        GgmlType::Q6_K => each_block!(q6_k, 210, 256),
        _ => return false,
    }
    let chains: [[__m512; 1]; R] = std::array::from_fn(|r| [_mm512_add_ps(acc[r][0], acc[r][1])]);
    let mut out = [[0.0; 1]; R];
    unsafe { reduce_all(&chains, &mut out) };
    for (sum, [s]) in sums.iter_mut().zip(out) {
        *sum = s;
    }
    true
}

/// `sums[j][k]` = the sum of the lanes of `acc[j][k]`, four at a time by
/// [`reduce4`] (padded with zeros), so each sum is the same whatever else
/// is reduced with it.
#[inline(always)]
pub(crate) unsafe fn reduce_all<const O: usize, const R: usize>(acc: &[[__m512; R]; O], sums: &mut [[f32; R]; O]) {
    let zero = _mm512_setzero_ps();
    let at = |i: usize| if i < O * R { acc[i / R][i % R] } else { zero };
    for group in (0..O * R).step_by(4) {
        let four = unsafe { reduce4(at(group), at(group + 1), at(group + 2), at(group + 3)) };
        for (i, s) in four.into_iter().enumerate().take(O * R - group) {
            sums[(group + i) / R][(group + i) % R] = s;
        }
    }
}

/// The sums of the lanes of `a`, `b`, `c` and `d`, by one tree whose
/// arithmetic is the same for each of the four (so a row's sum does not
/// depend on its neighbours).
#[inline(always)]
unsafe fn reduce4(a: __m512, b: __m512, c: __m512, d: __m512) -> [f32; 4] {
    // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] and the same for c, d.
    let ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    let cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    // Per 128-bit lane: the lane's sums of a, b, c, d.
    let lanes = _mm512_add_ps(_mm512_shuffle_ps::<0x44>(ab, cd), _mm512_shuffle_ps::<0xEE>(ab, cd));
    let halves = _mm256_add_ps(
        _mm512_castps512_ps256(lanes),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(lanes))),
    );
    let four = _mm_add_ps(_mm256_castps256_ps128(halves), _mm256_extractf128_ps::<1>(halves));
    let mut out = [0.0; 4];
    // SAFETY: four floats into `out`.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), four) };
    out
}

/// The little-endian IEEE half at byte `i`, widened (F16C, no feature check).
#[inline(always)]
unsafe fn f16(b: &[u8], i: usize) -> f32 {
    let h = u16::from_le_bytes([b[i], b[i + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h))))
}

/// Sixteen bytes from `at` as i32 lanes, zero-extended.
#[inline(always)]
unsafe fn bytes16(at: *const u8) -> __m512i {
    unsafe { _mm512_cvtepu8_epi32(_mm_loadu_si128(at as *const __m128i)) }
}

/// Q4_1: `q * d + m`.
#[inline(always)]
unsafe fn q4_1(b: &[u8], mut put: impl FnMut(usize, __m512)) {
    let (d, m) = (_mm512_set1_ps(f16(b, 0)), _mm512_set1_ps(f16(b, 2)));
    let q = unsafe { bytes16(b[4..].as_ptr()) };
    for (half, q) in [_mm512_and_si512(q, _mm512_set1_epi32(0x0F)), _mm512_srli_epi32::<4>(q)].into_iter().enumerate() {
        unsafe { put(16 * half, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q), d), m)) };
    }
}

/// Q5_0: `(q - 16) * d`, the fifth bit of element j from bit j of `qh`.
#[inline(always)]
unsafe fn q5_0(b: &[u8], mut put: impl FnMut(usize, __m512)) {
    let d = _mm512_set1_ps(f16(b, 0));
    let qh = _mm512_set1_epi32(i32::from_le_bytes([b[2], b[3], b[4], b[5]]));
    let q = unsafe { bytes16(b[6..].as_ptr()) };
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let nibbles = [_mm512_and_si512(q, _mm512_set1_epi32(0x0F)), _mm512_srli_epi32::<4>(q)];
    for (half, nibble) in nibbles.into_iter().enumerate() {
        let shift = _mm512_add_epi32(lanes, _mm512_set1_epi32(16 * half as i32));
        let high = _mm512_slli_epi32::<4>(_mm512_and_si512(_mm512_srlv_epi32(qh, shift), _mm512_set1_epi32(1)));
        let q = _mm512_sub_epi32(_mm512_or_si512(nibble, high), _mm512_set1_epi32(16));
        unsafe { put(16 * half, _mm512_mul_ps(_mm512_cvtepi32_ps(q), d)) };
    }
}

/// Q8_0: `q * d`, q signed.
#[inline(always)]
unsafe fn q8_0(b: &[u8], mut put: impl FnMut(usize, __m512)) {
    let d = _mm512_set1_ps(f16(b, 0));
    for half in 0..2 {
        let q = unsafe { _mm512_cvtepi8_epi32(_mm_loadu_si128(b[2 + 16 * half..].as_ptr() as *const __m128i)) };
        unsafe { put(16 * half, _mm512_mul_ps(_mm512_cvtepi32_ps(q), d)) };
    }
}

/// Q4_K: `d * scale * q - dmin * min` per 32 values.
#[inline(always)]
unsafe fn q4_k(b: &[u8], mut put: impl FnMut(usize, __m512)) {
    let (d, dmin) = (f16(b, 0), f16(b, 2));
    let scales = &b[4..16];
    for g in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (_mm512_set1_ps(d * sc1), _mm512_set1_ps(dmin * m1));
        let (d2, m2) = (_mm512_set1_ps(d * sc2), _mm512_set1_ps(dmin * m2));
        for h in 0..2 {
            let q = unsafe { bytes16(b[16 + 32 * g + 16 * h..].as_ptr()) };
            let (lo, hi) = (_mm512_and_si512(q, _mm512_set1_epi32(0x0F)), _mm512_srli_epi32::<4>(q));
            unsafe {
                put(64 * g + 16 * h, _mm512_sub_ps(_mm512_mul_ps(d1, _mm512_cvtepi32_ps(lo)), m1));
                put(64 * g + 32 + 16 * h, _mm512_sub_ps(_mm512_mul_ps(d2, _mm512_cvtepi32_ps(hi)), m2));
            }
        }
    }
}

/// Q6_K: `d * scale * (q - 32)` per 16 values; value l + 32k of each 128
/// takes a nibble of low byte l + 32 (k % 2) (low for k < 2) and bits 2k..2k+2
/// of high byte l.
#[inline(always)]
unsafe fn q6_k(b: &[u8], mut put: impl FnMut(usize, __m512)) {
    let d = f16(b, 208);
    for half in 0..2 {
        let (ql, qh, sc) = (&b[64 * half..], &b[128 + 32 * half..], &b[192 + 8 * half..]);
        for h in 0..2 {
            let high = unsafe { bytes16(qh[16 * h..].as_ptr()) };
            let low = unsafe { [bytes16(ql[16 * h..].as_ptr()), bytes16(ql[16 * h + 32..].as_ptr())] };
            for k in 0..4 {
                let nibble = if k < 2 {
                    _mm512_and_si512(low[k % 2], _mm512_set1_epi32(0x0F))
                } else {
                    _mm512_srli_epi32::<4>(low[k % 2])
                };
                let top =
                    _mm512_and_si512(_mm512_srlv_epi32(high, _mm512_set1_epi32(2 * k as i32)), _mm512_set1_epi32(3));
                let q = _mm512_sub_epi32(_mm512_or_si512(nibble, _mm512_slli_epi32::<4>(top)), _mm512_set1_epi32(32));
                let scale = _mm512_set1_ps(d * f32::from(sc[h + 2 * k] as i8));
                unsafe { put(128 * half + 32 * k + 16 * h, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(q))) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_portable_kernels_bit_for_bit() {
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")) {
            return;
        }
        for ty in [GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q4_0] {
            let blocks = 64;
            let bytes = crate::gguf::dequant::testing::random_bytes(blocks * ty.type_size(), ty as u64);
            let (mut want, mut got) = (vec![0.0; blocks * ty.block_size()], vec![0.0; blocks * ty.block_size()]);
            portable(ty, &bytes, &mut want);
            // SAFETY: checked above.
            unsafe { dequantize_blocks(ty, &bytes, &mut got) };
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{ty} value {i}: {g} vs {w}");
            }
        }
    }
}
