//! AVX2 dot products of float32 activations with weight rows dequantized
//! in registers, eight values per instruction, for the block formats the
//! named models hold (Q4_1, Q5_0, Q8_0, Q4_K, Q6_K): the AVX2 form of
//! `avx512::dots`. Each value is computed as the portable kernel computes
//! it (multiply, then add or subtract, never fused) and used from the
//! register it is dequantized into.

use std::arch::x86_64::*;

use super::scale_min_k4;
use super::GgmlType;

/// How many weight rows ahead `dots` prefetches.
const AHEAD: usize = 4;

/// `sums[r] = ` the dot product of weight row `rows[r]` with `x`, for `R`
/// consecutive rows of one type, `row_bytes` apart in memory; `false` for a
/// type without a kernel. The rows share each block step with one sum each
/// (four rows hide the FMA's latency; more sums would not fit in sixteen
/// registers), the next rows' bytes are prefetched, and each sum is reduced
/// by one fixed tree, so a row's result does not depend on `R` or its place.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dots<const R: usize>(ty: GgmlType, rows: [&[u8]; R], x: &[f32], sums: &mut [f32; R]) -> bool {
    let row_bytes = rows[0].len();
    assert!(x.len() == row_bytes / ty.type_size() * ty.block_size() && rows.iter().all(|r| r.len() == row_bytes));
    let mut acc = [_mm256_setzero_ps(); R];
    let x = x.as_ptr();
    macro_rules! each_block {
        ($kernel:ident, $bytes:literal, $n:literal) => {
            for i in 0..row_bytes / $bytes {
                for (r, row) in rows.iter().enumerate() {
                    let b = &row[i * $bytes..(i + 1) * $bytes];
                    for line in (0..$bytes).step_by(64) {
                        // A hint only: the same bytes `AHEAD` rows on, past the end at the last rows.
                        _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().wrapping_add(AHEAD * row_bytes + line) as *const i8);
                    }
                    // SAFETY: `b` is one whole block; `x` holds the row's values, `at + 8` at most `$n`.
                    unsafe {
                        $kernel(b, |at, v| {
                            acc[r] = _mm256_fmadd_ps(v, _mm256_loadu_ps(x.add(i * $n + at)), acc[r]);
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
    for (sum, acc) in sums.iter_mut().zip(acc) {
        // SAFETY: the features are enabled here.
        *sum = unsafe { reduce8(acc) };
    }
    true
}

/// The sum of the eight lanes of `v`, by one fixed tree.
#[inline(always)]
pub(crate) unsafe fn reduce8(v: __m256) -> f32 {
    let four = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
    _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps::<1>(two, two)))
}

/// The little-endian IEEE half at byte `i`, widened (F16C, no feature check).
#[inline(always)]
unsafe fn f16(b: &[u8], i: usize) -> f32 {
    let h = u16::from_le_bytes([b[i], b[i + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h))))
}

/// Eight bytes from `at` as i32 lanes, zero-extended.
#[inline(always)]
unsafe fn bytes8(at: &[u8]) -> __m256i {
    assert!(at.len() >= 8);
    unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(at.as_ptr() as *const __m128i)) }
}

/// The low and high nibbles of eight bytes, as i32 lanes.
#[inline(always)]
unsafe fn nibbles8(at: &[u8]) -> [__m256i; 2] {
    let q = unsafe { bytes8(at) };
    [_mm256_and_si256(q, _mm256_set1_epi32(0x0F)), _mm256_srli_epi32::<4>(q)]
}

/// Q4_1: `q * d + m`; byte j holds values j (low nibble) and j + 16.
#[inline(always)]
unsafe fn q4_1(b: &[u8], mut put: impl FnMut(usize, __m256)) {
    let (d, m) = (_mm256_set1_ps(f16(b, 0)), _mm256_set1_ps(f16(b, 2)));
    for j in 0..2 {
        for (half, q) in unsafe { nibbles8(&b[4 + 8 * j..]) }.into_iter().enumerate() {
            put(16 * half + 8 * j, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(q), d), m));
        }
    }
}

/// Q5_0: `(q - 16) * d`, the fifth bit of value i from bit i of `qh`.
#[inline(always)]
unsafe fn q5_0(b: &[u8], mut put: impl FnMut(usize, __m256)) {
    let d = _mm256_set1_ps(f16(b, 0));
    let qh = _mm256_set1_epi32(i32::from_le_bytes([b[2], b[3], b[4], b[5]]));
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for j in 0..2 {
        for (half, nibble) in unsafe { nibbles8(&b[6 + 8 * j..]) }.into_iter().enumerate() {
            let at = 16 * half + 8 * j;
            let shift = _mm256_add_epi32(lanes, _mm256_set1_epi32(at as i32));
            let high = _mm256_slli_epi32::<4>(_mm256_and_si256(_mm256_srlv_epi32(qh, shift), _mm256_set1_epi32(1)));
            let q = _mm256_sub_epi32(_mm256_or_si256(nibble, high), _mm256_set1_epi32(16));
            put(at, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
        }
    }
}

/// Q8_0: `q * d`, q signed.
#[inline(always)]
unsafe fn q8_0(b: &[u8], mut put: impl FnMut(usize, __m256)) {
    let d = _mm256_set1_ps(f16(b, 0));
    for j in 0..4 {
        let q = unsafe { _mm256_cvtepi8_epi32(_mm_loadl_epi64(b[2 + 8 * j..].as_ptr() as *const __m128i)) };
        put(8 * j, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
    }
}

/// Q4_K: `d * scale * q - dmin * min` per 32 values.
#[inline(always)]
unsafe fn q4_k(b: &[u8], mut put: impl FnMut(usize, __m256)) {
    let (d, dmin) = (f16(b, 0), f16(b, 2));
    let scales = &b[4..16];
    for g in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (_mm256_set1_ps(d * sc1), _mm256_set1_ps(dmin * m1));
        let (d2, m2) = (_mm256_set1_ps(d * sc2), _mm256_set1_ps(dmin * m2));
        for h in 0..4 {
            let [lo, hi] = unsafe { nibbles8(&b[16 + 32 * g + 8 * h..]) };
            put(64 * g + 8 * h, _mm256_sub_ps(_mm256_mul_ps(d1, _mm256_cvtepi32_ps(lo)), m1));
            put(64 * g + 32 + 8 * h, _mm256_sub_ps(_mm256_mul_ps(d2, _mm256_cvtepi32_ps(hi)), m2));
        }
    }
}

/// Q6_K: `d * scale * (q - 32)` per 16 values; value l + 32k of each 128
/// takes a nibble of low byte l + 32 (k % 2) (low for k < 2) and bits 2k..2k+2
/// of high byte l.
#[inline(always)]
unsafe fn q6_k(b: &[u8], mut put: impl FnMut(usize, __m256)) {
    let d = f16(b, 208);
    for half in 0..2 {
        let (ql, qh, sc) = (&b[64 * half..], &b[128 + 32 * half..], &b[192 + 8 * half..]);
        for h in 0..4 {
            let high = unsafe { bytes8(&qh[8 * h..]) };
            let low = unsafe { [bytes8(&ql[8 * h..]), bytes8(&ql[8 * h + 32..])] };
            for k in 0..4 {
                let nibble = if k < 2 {
                    _mm256_and_si256(low[k % 2], _mm256_set1_epi32(0x0F))
                } else {
                    _mm256_srli_epi32::<4>(low[k % 2])
                };
                let top =
                    _mm256_and_si256(_mm256_srlv_epi32(high, _mm256_set1_epi32(2 * k as i32)), _mm256_set1_epi32(3));
                let q = _mm256_sub_epi32(_mm256_or_si256(nibble, _mm256_slli_epi32::<4>(top)), _mm256_set1_epi32(32));
                let scale = _mm256_set1_ps(d * f32::from(sc[h / 2 + 2 * k] as i8));
                put(128 * half + 32 * k + 8 * h, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(q)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequant::dequantize;

    #[test]
    fn dots_match_the_dequantized_rows() {
        if !crate::gguf::dequant::has_avx2() {
            return;
        }
        for ty in [GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K] {
            let in_dim = 2 * 256;
            let bytes = crate::gguf::dequant::testing::random_blocks(ty, 5 * in_dim / ty.block_size(), ty as u64);
            let w = dequantize(ty, &bytes, 5 * in_dim).unwrap();
            let x: Vec<f32> = (0..in_dim).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
            let rows: Vec<&[u8]> = bytes.chunks_exact(bytes.len() / 5).collect();
            let mut four = [0.0f32; 4];
            // SAFETY: checked above.
            assert!(unsafe { dots(ty, [rows[1], rows[2], rows[3], rows[4]], &x, &mut four) });
            for (r, row) in rows.iter().enumerate() {
                let mut one = [0.0f32];
                assert!(unsafe { dots(ty, [*row], &x, &mut one) });
                let weights = &w[r * in_dim..(r + 1) * in_dim];
                let want: f64 = weights.iter().zip(&x).map(|(&w, &x)| f64::from(w) * f64::from(x)).sum();
                let scale: f64 = weights.iter().zip(&x).map(|(&w, &x)| (f64::from(w) * f64::from(x)).abs()).sum();
                assert!((f64::from(one[0]) - want).abs() <= 1e-5 * scale, "{ty} row {r}: {} vs {want}", one[0]);
                if r > 0 {
                    assert_eq!(four[r - 1].to_bits(), one[0].to_bits(), "{ty}: a row's sum depends on its group");
                }
            }
        }
    }
}
