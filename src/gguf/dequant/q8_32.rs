//! Products of 32-value block rows (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with activations
//! quantized to 8 bits per 32 values, as llama.cpp computes them (its
//! Q8_0/Q8_1): integer dot products on AVX-512 (BW) or AVX2, one float
//! scale per block.
//!
//! Numerics: each 32 activations share one scale, `amax / 127`, and round
//! to the nearest integer; the weights are used exactly. A block's sum is an
//! exact integer; blocks are added in float32 in a fixed order, so a row's
//! result depends on neither the thread count nor the other rows.
//!
//! Blocks are taken in pairs, one 64-byte vector each (two on AVX2), ordered
//! (A 0..16, B 0..16, A 16..32, B 16..32): the order a Q4 pair's nibbles
//! unpack into.
//! The activations are stored in the same order, with their scales spread
//! over the lanes of the integer sums (four lanes per 16 values).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::GgmlType;

/// Values per block, and so per activation scale.
pub const QK: usize = 32;
/// How many weight rows ahead `dots` prefetches.
#[cfg(target_arch = "x86_64")]
const AHEAD: usize = 4;

/// Rows of activations quantized per 32 values, in block pairs.
pub struct Q8Pairs {
    in_dim: usize,
    /// Per pair, 64 values in the pair order.
    q: Vec<i8>,
    /// Per pair, 16 lanes: the scale of the block each lane of the integer sums covers.
    scales: Vec<f32>,
    /// Per pair, 16 lanes: the block's `scale * sum(q) / 8` (eight lanes per block).
    sums: Vec<f32>,
}

impl Q8Pairs {
    /// Quantizes `x` (`[rows, in_dim]`, `in_dim` a multiple of 64).
    pub fn quantize(x: &[f32], in_dim: usize) -> Self {
        assert!(in_dim.is_multiple_of(2 * QK) && x.len().is_multiple_of(in_dim));
        let pairs = x.len() / (2 * QK);
        let (mut q, mut scales, mut sums) =
            (vec![0i8; x.len()], Vec::with_capacity(16 * pairs), Vec::with_capacity(16 * pairs));
        for (pair, q) in x.chunks_exact(2 * QK).zip(q.chunks_exact_mut(2 * QK)) {
            let mut block = [(0.0f32, 0.0f32); 2];
            for (b, values) in pair.chunks_exact(QK).enumerate() {
                let amax = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let inverse = if amax > 0.0 { 127.0 / amax } else { 0.0 };
                let mut sum = 0i32;
                for (i, &v) in values.iter().enumerate() {
                    let value = (v * inverse).round().clamp(-127.0, 127.0) as i8;
                    // Value i of block b goes to 16-byte lane 2 * (i / 16) + b.
                    q[16 * (2 * (i / 16) + b) + i % 16] = value;
                    sum += i32::from(value);
                }
                let d = amax / 127.0;
                block[b] = (d, d * sum as f32 / 8.0);
            }
            for lane in 0..16 {
                let (d, s) = block[(lane / 4) % 2];
                scales.push(d);
                sums.push(s);
            }
        }
        Self { in_dim, q, scales, sums }
    }

    pub fn rows(&self) -> usize {
        self.q.len() / self.in_dim
    }
}

/// Whether `ty` has a kernel here and this CPU runs it.
pub fn runs(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0)
        && (super::has_avx512_bw() || super::has_avx2())
}

/// Off x86-64 no type `runs`, so this is never called.
///
/// # Safety
/// None needed.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn dots<const O: usize, const R: usize>(
    ty: GgmlType,
    _: [&[u8]; O],
    _: &Q8Pairs,
    _: [usize; R],
    _: &mut [[f32; R]; O],
) {
    unreachable!("no 8-bit kernel for {ty} on this CPU")
}

/// `sums[j][k] = w[j] · x[rows[k]]` for `O` weight rows of `ty` (one
/// part's consecutive rows) and `R` quantized input rows: one sum in flight
/// per pair, every pair reduced by the same tree, on the widest vector unit
/// this CPU has.
///
/// # Safety
/// `runs(ty)`.
#[cfg(target_arch = "x86_64")]
pub unsafe fn dots<const O: usize, const R: usize>(
    ty: GgmlType,
    w: [&[u8]; O],
    x: &Q8Pairs,
    rows: [usize; R],
    sums: &mut [[f32; R]; O],
) {
    let (pairs, size) = (x.in_dim / (2 * QK), ty.type_size());
    assert!(w.iter().all(|w| w.len() == 2 * pairs * size) && rows.iter().all(|&r| r < x.rows()));
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
    x: &Q8Pairs,
    rows: [usize; R],
    sums: &mut [[f32; R]; O],
) {
    let pairs = x.in_dim / (2 * QK);
    let size = ty.type_size();
    let ones = _mm512_set1_epi16(1);
    let mut acc = [[_mm512_setzero_ps(); R]; O];
    macro_rules! each_pair {
        ($kernel:ident) => {
            for p in 0..pairs {
                let xs: [_; R] = std::array::from_fn(|k| {
                    let at = rows[k] * pairs + p;
                    // SAFETY: pair `at` of `x`'s arrays.
                    unsafe {
                        (
                            _mm512_loadu_si512(x.q.as_ptr().add(64 * at) as *const _),
                            _mm512_loadu_ps(x.scales.as_ptr().add(16 * at)),
                            _mm512_loadu_ps(x.sums.as_ptr().add(16 * at)),
                        )
                    }
                });
                for (w, acc) in w.iter().zip(acc.iter_mut()) {
                    let (a, b) = (&w[2 * p * size..(2 * p + 1) * size], &w[(2 * p + 1) * size..(2 * p + 2) * size]);
                    for line in (0..2 * size).step_by(64) {
                        // A hint only: the same pair `AHEAD` rows on (rows of a part are consecutive).
                        _mm_prefetch::<_MM_HINT_T0>(a.as_ptr().wrapping_add(AHEAD * w.len() + line) as *const i8);
                    }
                    // SAFETY: `a` and `b` are whole blocks of `ty`.
                    let pair = unsafe { $kernel(a, b) };
                    for (acc, &(q, scales, sums)) in acc.iter_mut().zip(&xs) {
                        let (weights, q) = if pair.signed {
                            // Unsigned times signed: |w| times q with w's sign.
                            let negative = _mm512_movepi8_mask(pair.weights);
                            (
                                _mm512_abs_epi8(pair.weights),
                                _mm512_mask_sub_epi8(q, negative, _mm512_setzero_si512(), q),
                            )
                        } else {
                            (pair.weights, q)
                        };
                        let products = _mm512_madd_epi16(_mm512_maddubs_epi16(weights, q), ones);
                        *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(products), _mm512_mul_ps(pair.scales, scales), *acc);
                        *acc = _mm512_fmadd_ps(pair.offsets, sums, *acc);
                    }
                }
            }
        };
    }
    match ty {
        GgmlType::Q4_0 => each_pair!(q4_0),
        GgmlType::Q4_1 => each_pair!(q4_1),
        GgmlType::Q5_0 => each_pair!(q5_0),
        GgmlType::Q5_1 => each_pair!(q5_1),
        GgmlType::Q8_0 => each_pair!(q8_0),
        _ => panic!("{ty} has no 8-bit kernel"),
    }
    // SAFETY: the features are enabled here.
    unsafe { super::avx512::reduce_all(&acc, sums) };
}

/// `dots` on AVX2: each pair in two 32-byte halves, (A 0..16, B 0..16) and
/// (A 16..32, B 16..32), whose integer sums share their lanes' scales.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dots_avx2<const O: usize, const R: usize>(
    ty: GgmlType,
    w: [&[u8]; O],
    x: &Q8Pairs,
    rows: [usize; R],
    sums: &mut [[f32; R]; O],
) {
    let pairs = x.in_dim / (2 * QK);
    let size = ty.type_size();
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); R]; O];
    macro_rules! each_pair {
        ($kernel:ident) => {
            for p in 0..pairs {
                let xs: [_; R] = std::array::from_fn(|k| {
                    let at = rows[k] * pairs + p;
                    // SAFETY: pair `at` of `x`'s arrays (the two halves' scales are the same lanes).
                    unsafe {
                        let q = x.q.as_ptr().add(64 * at);
                        let sums = x.sums.as_ptr().add(16 * at);
                        (
                            [_mm256_loadu_si256(q as *const _), _mm256_loadu_si256(q.add(32) as *const _)],
                            _mm256_loadu_ps(x.scales.as_ptr().add(16 * at)),
                            _mm256_add_ps(_mm256_loadu_ps(sums), _mm256_loadu_ps(sums.add(8))),
                        )
                    }
                });
                for (w, acc) in w.iter().zip(acc.iter_mut()) {
                    let (a, b) = (&w[2 * p * size..(2 * p + 1) * size], &w[(2 * p + 1) * size..(2 * p + 2) * size]);
                    for line in (0..2 * size).step_by(64) {
                        // A hint only: the same pair `AHEAD` rows on (rows of a part are consecutive).
                        _mm_prefetch::<_MM_HINT_T0>(a.as_ptr().wrapping_add(AHEAD * w.len() + line) as *const i8);
                    }
                    // SAFETY: `a` and `b` are whole blocks of `ty`.
                    let pair = unsafe { $kernel(a, b) };
                    for (acc, (q, scales, sums)) in acc.iter_mut().zip(&xs) {
                        let mut products = _mm256_setzero_si256();
                        for (&weights, &q) in pair.weights.iter().zip(q) {
                            let (weights, q) = if pair.signed {
                                // Unsigned times signed: |w| times q with w's sign.
                                (_mm256_abs_epi8(weights), _mm256_sign_epi8(q, weights))
                            } else {
                                (weights, q)
                            };
                            let half = _mm256_madd_epi16(_mm256_maddubs_epi16(weights, q), ones);
                            products = _mm256_add_epi32(products, half);
                        }
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(products), _mm256_mul_ps(pair.scales, *scales), *acc);
                        *acc = _mm256_fmadd_ps(pair.offsets, *sums, *acc);
                    }
                }
            }
        };
    }
    match ty {
        GgmlType::Q4_0 => each_pair!(q4_0_avx2),
        GgmlType::Q4_1 => each_pair!(q4_1_avx2),
        GgmlType::Q5_0 => each_pair!(q5_0_avx2),
        GgmlType::Q5_1 => each_pair!(q5_1_avx2),
        GgmlType::Q8_0 => each_pair!(q8_0_avx2),
        _ => panic!("{ty} has no 8-bit kernel"),
    }
    for (acc, sums) in acc.iter().zip(sums.iter_mut()) {
        for (acc, sum) in acc.iter().zip(sums.iter_mut()) {
            // SAFETY: the features are enabled here.
            *sum = unsafe { super::avx2::reduce8(*acc) };
        }
    }
}

/// A block pair for AVX2: the two halves' codes, and the lanes' scales and
/// offsets (four lanes A, four B; the same for both halves).
#[cfg(target_arch = "x86_64")]
struct HalfPairs {
    weights: [__m256i; 2],
    signed: bool,
    scales: __m256,
    offsets: __m256,
}

/// Lanes of the integer sums of a half: four for A, four for B.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn spread8(four: __m128, first: i32, second: i32) -> __m256 {
    let (f, s) = (first, second);
    _mm256_permutevar8x32_ps(_mm256_castps128_ps256(four), _mm256_setr_epi32(f, f, f, f, s, s, s, s))
}

/// Two blocks' 16 bytes of nibbles as the two halves.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn nibbles2(a: &[u8], b: &[u8]) -> [__m256i; 2] {
    let q =
        unsafe { _mm256_set_m128i(_mm_loadu_si128(b.as_ptr() as *const _), _mm_loadu_si128(a.as_ptr() as *const _)) };
    let low = _mm256_set1_epi8(0x0F);
    [_mm256_and_si256(q, low), _mm256_and_si256(_mm256_srli_epi16::<4>(q), low)]
}

/// Byte i of the result is 16 where bit i of `bits` is set, else 0.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sixteens(bits: u32) -> __m256i {
    // Byte i takes byte i / 8 of `bits`; all of its bits but i % 8 are then set.
    let spread = _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread);
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi8(-1));
    _mm256_and_si256(set, _mm256_set1_epi8(16))
}

/// Two blocks' fifth bits (`qh` at byte `at`: bit i for value i) added to their nibbles.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fifth_bits2(a: &[u8], b: &[u8], at: usize, [low, high]: [__m256i; 2]) -> [__m256i; 2] {
    let qh = |block: &[u8]| u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
    let (ha, hb) = (qh(a), qh(b));
    unsafe {
        [
            _mm256_or_si256(low, sixteens((ha & 0xFFFF) | (hb & 0xFFFF) << 16)),
            _mm256_or_si256(high, sixteens((ha >> 16) | (hb >> 16) << 16)),
        ]
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q4_0_avx2(a: &[u8], b: &[u8]) -> HalfPairs {
    let scales = unsafe { spread8(halves(a, b, 0, 0), 0, 2) };
    let offsets = _mm256_mul_ps(scales, _mm256_set1_ps(-8.0));
    HalfPairs { weights: unsafe { nibbles2(&a[2..], &b[2..]) }, signed: false, scales, offsets }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q4_1_avx2(a: &[u8], b: &[u8]) -> HalfPairs {
    let dm = unsafe { halves(a, b, 0, 2) };
    let (scales, offsets) = unsafe { (spread8(dm, 0, 2), spread8(dm, 1, 3)) };
    HalfPairs { weights: unsafe { nibbles2(&a[4..], &b[4..]) }, signed: false, scales, offsets }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q5_0_avx2(a: &[u8], b: &[u8]) -> HalfPairs {
    let scales = unsafe { spread8(halves(a, b, 0, 0), 0, 2) };
    let weights = unsafe { fifth_bits2(a, b, 2, nibbles2(&a[6..], &b[6..])) };
    HalfPairs { weights, signed: false, scales, offsets: _mm256_mul_ps(scales, _mm256_set1_ps(-16.0)) }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q5_1_avx2(a: &[u8], b: &[u8]) -> HalfPairs {
    let dm = unsafe { halves(a, b, 0, 2) };
    let (scales, offsets) = unsafe { (spread8(dm, 0, 2), spread8(dm, 1, 3)) };
    HalfPairs { weights: unsafe { fifth_bits2(a, b, 4, nibbles2(&a[8..], &b[8..])) }, signed: false, scales, offsets }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q8_0_avx2(a: &[u8], b: &[u8]) -> HalfPairs {
    let (qa, qb) =
        unsafe { (_mm256_loadu_si256(a[2..].as_ptr() as *const _), _mm256_loadu_si256(b[2..].as_ptr() as *const _)) };
    let weights = [_mm256_permute2x128_si256::<0x20>(qa, qb), _mm256_permute2x128_si256::<0x31>(qa, qb)];
    let scales = unsafe { spread8(halves(a, b, 0, 0), 0, 2) };
    HalfPairs { weights, signed: true, scales, offsets: _mm256_setzero_ps() }
}

/// A block pair ready for the integer products: 64 codes in the pair order
/// (unsigned, or `signed`), each lane's weight scale, and the coefficient
/// of the activations' sums (value = scale * code + offset).
#[cfg(target_arch = "x86_64")]
struct Pair {
    weights: __m512i,
    signed: bool,
    scales: __m512,
    offsets: __m512,
}

/// Four halves (`a` at bytes `i`, `j`, `b` at the same) as floats
/// `[a_i, a_j, b_i, b_j]`, spread by `index` over sixteen lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn halves(a: &[u8], b: &[u8], i: usize, j: usize) -> __m128 {
    let h = |block: &[u8], at: usize| u64::from(u16::from_le_bytes([block[at], block[at + 1]]));
    let bits = h(a, i) | h(a, j) << 16 | h(b, i) << 32 | h(b, j) << 48;
    _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
}

/// Lanes of the integer sums: four per 16 values, A B A B.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn spread(four: __m128, first: i32, second: i32) -> __m512 {
    let (f, s) = (first, second);
    let index = _mm512_setr_epi32(f, f, f, f, s, s, s, s, f, f, f, f, s, s, s, s);
    _mm512_permutexvar_ps(index, _mm512_castps128_ps512(four))
}

/// Two blocks' 16 bytes of nibbles (value i low, value i + 16 high) in the pair order.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn nibbles(a: &[u8], b: &[u8]) -> __m512i {
    let q =
        unsafe { _mm256_set_m128i(_mm_loadu_si128(b.as_ptr() as *const _), _mm_loadu_si128(a.as_ptr() as *const _)) };
    let low = _mm256_set1_epi8(0x0F);
    let high = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low);
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_and_si256(q, low)), high)
}

/// Q4_0: value = d * (q - 8).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q4_0(a: &[u8], b: &[u8]) -> Pair {
    let d = unsafe { halves(a, b, 0, 0) };
    let scales = unsafe { spread(d, 0, 2) };
    let offsets = _mm512_mul_ps(scales, _mm512_set1_ps(-8.0));
    Pair { weights: unsafe { nibbles(&a[2..], &b[2..]) }, signed: false, scales, offsets }
}

/// Q4_1: value = d * q + m.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q4_1(a: &[u8], b: &[u8]) -> Pair {
    let dm = unsafe { halves(a, b, 0, 2) };
    let (scales, offsets) = unsafe { (spread(dm, 0, 2), spread(dm, 1, 3)) };
    Pair { weights: unsafe { nibbles(&a[4..], &b[4..]) }, signed: false, scales, offsets }
}

/// Two blocks' fifth bits (`qh` at byte `at`: bit i for value i) added to
/// their nibbles in the pair order.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fifth_bits(a: &[u8], b: &[u8], at: usize, nibbles: __m512i) -> __m512i {
    let qh = |block: &[u8]| u64::from(u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]));
    let (ha, hb) = (qh(a), qh(b));
    // Bytes 0..16: A 0..16, 16..32: B 0..16, 32..48: A 16..32, 48..64: B 16..32.
    let mask = (ha & 0xFFFF) | (hb & 0xFFFF) << 16 | (ha >> 16) << 32 | (hb >> 16) << 48;
    _mm512_mask_add_epi8(nibbles, mask, nibbles, _mm512_set1_epi8(16))
}

/// Q5_0: value = d * (q - 16), q five bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q5_0(a: &[u8], b: &[u8]) -> Pair {
    let d = unsafe { halves(a, b, 0, 0) };
    let scales = unsafe { spread(d, 0, 2) };
    let weights = unsafe { fifth_bits(a, b, 2, nibbles(&a[6..], &b[6..])) };
    Pair { weights, signed: false, scales, offsets: _mm512_mul_ps(scales, _mm512_set1_ps(-16.0)) }
}

/// Q5_1: value = d * q + m, q five bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q5_1(a: &[u8], b: &[u8]) -> Pair {
    let dm = unsafe { halves(a, b, 0, 2) };
    let (scales, offsets) = unsafe { (spread(dm, 0, 2), spread(dm, 1, 3)) };
    Pair { weights: unsafe { fifth_bits(a, b, 4, nibbles(&a[8..], &b[8..])) }, signed: false, scales, offsets }
}

/// Q8_0: value = d * q, q signed.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn q8_0(a: &[u8], b: &[u8]) -> Pair {
    let d = unsafe { halves(a, b, 0, 0) };
    let (qa, qb) =
        unsafe { (_mm256_loadu_si256(a[2..].as_ptr() as *const _), _mm256_loadu_si256(b[2..].as_ptr() as *const _)) };
    // (A 0..16, A 16..32, B 0..16, B 16..32) to the pair order.
    let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb);
    let weights = _mm512_shuffle_i64x2::<0b11_01_10_00>(both, both);
    Pair { weights, signed: true, scales: unsafe { spread(d, 0, 2) }, offsets: _mm512_setzero_ps() }
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
        x: &Q8Pairs,
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
        let in_dim = 6 * QK;
        for wide in crate::gguf::dequant::testing::int8_kernels() {
            for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0] {
                let mut w_bytes = random_blocks(ty, 2 * in_dim / QK, ty as u64);
                // Q4_1/Q5_1: a negative minimum too.
                for block in w_bytes.chunks_exact_mut(ty.type_size()).step_by(3) {
                    if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                        block[2..4].copy_from_slice(&half::f16::from_f32(-0.02).to_le_bytes());
                    }
                }
                let w = dequantize(ty, &w_bytes, 2 * in_dim).unwrap();
                let mut x: Vec<f32> = (0..5 * in_dim).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
                x[7] = 300.0;
                x[in_dim + QK..in_dim + 2 * QK].fill(0.0);
                let q = Q8Pairs::quantize(&x, in_dim);
                // The rounded activations, back in value order.
                let rounded = |r: usize, i: usize| {
                    let (pair, within) = (i / 64, i % 64);
                    let (block, v) = (within / 32, within % 32);
                    let at = r * in_dim + 64 * pair + 16 * (2 * (v / 16) + block) + v % 16;
                    let scale = q.scales[16 * (r * in_dim / 64 + pair) + 4 * block];
                    f64::from(q.q[at]) * f64::from(scale)
                };
                for (o, w_row) in w_bytes.chunks_exact(w_bytes.len() / 2).enumerate() {
                    let mut got = [[0.0f32; 4]];
                    unsafe { dots_on(wide, ty, [w_row], &q, [4, 0, 2, 1], &mut got) };
                    let got = got[0];
                    let mut alone = [[0.0f32]; 2];
                    unsafe { dots_on(wide, ty, [w_row, w_row], &q, [2], &mut alone) };
                    assert_eq!(alone[1][0].to_bits(), got[2].to_bits(), "{ty}: a row's sum depends on its group");
                    let weights = &w[o * in_dim..(o + 1) * in_dim];
                    for (k, r) in [4, 0, 2, 1].into_iter().enumerate() {
                        let want: f64 = (0..in_dim).map(|i| f64::from(weights[i]) * rounded(r, i)).sum();
                        let scale: f64 =
                            (0..in_dim).map(|i| (f64::from(weights[i]) * f64::from(x[r * in_dim + i])).abs()).sum();
                        assert!((f64::from(got[k]) - want).abs() <= 1e-5 * scale, "{ty} row {r}: {} vs {want}", got[k]);
                    }
                }
            }
        }
    }
}
