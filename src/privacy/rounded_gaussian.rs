//! Exact sampling of the rounded Gaussian `K = round(b + s Z)`, `Z ~ N(0, 1)`.
//!
//! **The normal deviate.** `Z` is drawn with Algorithm N of C. F. F. Karney,
//! "Sampling exactly from the normal distribution", ACM TOMS 42(1), 3 (2016),
//! arXiv:1303.6257. It uses only random bits, comparisons of lazily refined
//! uniform deviates ("u-rands", [`URand`]) and integer draws; no floating point.
//! One pass returns `(k, x)` with weight equal to the product of
//! * N1 `P(k) = e^{-k/2} (1 - e^{-1/2})` (count successes of Bernoulli(e^{-1/2}),
//!   von Neumann's run test in [`exp_minus_half`]),
//! * N2 acceptance `e^{-k(k-1)/2}` (`k(k-1)` further Bernoulli(e^{-1/2})),
//!   so N1·N2 gives `e^{-k^2/2}` up to a constant,
//! * N3 `x ~ U(0, 1)` (a u-rand) and N4 acceptance `e^{-x(2k+x)/2}` as `k + 1`
//!   runs of Algorithm B ([`exp_b`]), each true with probability
//!   `e^{-x(2k+x)/(2k+2)}` given `x`,
//!
//! i.e. `const · e^{-k^2/2} e^{-(2kx + x^2)/2} = const · e^{-(k+x)^2/2}` on
//! `[0, ∞)`. A rejection restarts at N1 with fresh bits; N5 attaches a fair
//! sign. Every decision reads only finitely many digits of `x`; the digits
//! never read stay i.i.d. uniform given everything observed, so extending `x`
//! afterwards with fresh digits yields exactly the accepted deviate.
//!
//! **The rounding.** With `u = b + 1/2 + s·σ(k + x)` we return `floor(u)`,
//! i.e. round-half-up of `b + sZ` (ties have probability zero). `s = M·2^E`
//! and `b = B/2^shift` are dyadic, so for an `m`-bit prefix of `x` the bounds of
//! `u` are exact `i128` dyadics. Phase 1 takes `m = ⌊log2 s⌋ + 5` bits, so the
//! open interval of `u` has width `< 1/16` and holds at most one integer `n`.
//! If it holds none, `floor(u)` is known. Otherwise `u < n` iff `x` lies on one
//! side of the rational `x* = P/R` (`R = s·2^f <= 2^89`); phase 2 decides this by
//! Karney's exact digit-by-digit comparison of a u-rand with a fraction, whose
//! remainder stays below `R·2^DIGIT <= 2^(89+DIGIT)`. Nothing is ever approximated: a
//! wrong answer would need `x = x*` or a dyadic `x`, events of probability zero.
//!
//! **Cost.** Karney reports about 2.03 passes of N1–N4 per deviate, about 30
//! random binary digits in all; with `DIGIT`-bit digits a few more bits are
//! spent but far fewer steps. Rounding adds `⌊log2 s⌋ + 5` bits of `x` (minus
//! those N4 already drew); phase 2 runs with probability `< 1/16` and needs
//! another digit with probability `≤ 2^-DIGIT` per step. Measured here with
//! ChaCha20: about 160 ns and 1.7 `next_u64` calls per draw at `s = 24`.
//! Bits come from one
//! buffered `next_u64` stream; at most 63 unused bits are dropped per call.
//! The only panic is at `k ≥ 2^20`, an event of probability below `e^{-2^39}`.

use rand::Rng;

/// Bits per u-rand digit (a power of two, at most 32).
const DIGIT: u32 = 4;
const PER_WORD: u32 = 64 / DIGIT;
const MASK: u64 = (1 << DIGIT) - 1;

/// Random bits from `next_u64`, handed out most significant first, none skipped.
struct Bits<'a, R: Rng + ?Sized> {
    rng: &'a mut R,
    buf: u64,
    avail: u32,
}

impl<'a, R: Rng + ?Sized> Bits<'a, R> {
    fn new(rng: &'a mut R) -> Self {
        Bits { rng, buf: 0, avail: 0 }
    }

    /// `nb` fresh uniform bits, `1 <= nb <= 32`.
    fn take(&mut self, nb: u32) -> u64 {
        debug_assert!((1..=32).contains(&nb));
        if self.avail >= nb {
            let r = self.buf >> (64 - nb);
            self.buf <<= nb;
            self.avail -= nb;
            return r;
        }
        let have = self.avail;
        let hi = if have == 0 { 0 } else { self.buf >> (64 - have) };
        let fresh = self.rng.next_u64();
        let need = nb - have;
        self.buf = fresh << need;
        self.avail = 64 - need;
        (hi << need) | (fresh >> (64 - need))
    }
}

/// A uniform deviate in (0, 1) whose base-`2^DIGIT` digits are drawn on demand.
/// Digits are packed most significant first: the first 64 bits in `head`, the
/// rest (rarely needed) in `tail`.
#[derive(Default)]
struct URand {
    head: u64,
    tail: Vec<u64>,
    n: u32,
}

impl URand {
    /// Digit `i` (0 = most significant), drawing all digits up to it if needed.
    fn digit<R: Rng + ?Sized>(&mut self, i: u32, bits: &mut Bits<R>) -> u64 {
        while self.n <= i {
            let d = bits.take(DIGIT);
            let (w, off) = (self.n / PER_WORD, (self.n % PER_WORD) * DIGIT);
            let v = d << (64 - DIGIT - off);
            if w == 0 {
                self.head |= v;
            } else {
                if off == 0 {
                    self.tail.push(0);
                }
                *self.tail.last_mut().unwrap() |= v;
            }
            self.n += 1;
        }
        let (w, off) = (i / PER_WORD, (i % PER_WORD) * DIGIT);
        let word = if w == 0 { self.head } else { self.tail[w as usize - 1] };
        (word >> (64 - DIGIT - off)) & MASK
    }

    /// `self < y`, comparing digit by digit (equality has probability zero).
    fn less<R: Rng + ?Sized>(&mut self, y: &mut URand, bits: &mut Bits<R>) -> bool {
        let mut i = 0;
        loop {
            let (a, b) = (self.digit(i, bits), y.digit(i, bits));
            if a != b {
                return a < b;
            }
            i += 1;
        }
    }

    /// `self < p / r` for integers `0 < p < r <= 2^89`, exactly. Write
    /// `self = (d + y)/2^DIGIT`; then `self < p/r` iff `y < (p·2^DIGIT - d·r)/r`,
    /// which is false if the new numerator is `<= 0`, true if it is `>= r`, and
    /// otherwise the same question one digit further on.
    fn less_than_ratio<R: Rng + ?Sized>(&mut self, mut p: i128, r: i128, bits: &mut Bits<R>) -> bool {
        debug_assert!(0 < p && p < r && r <= 1 << 89);
        let mut i = 0;
        loop {
            p = (p << DIGIT) - self.digit(i, bits) as i128 * r;
            if p <= 0 {
                return false;
            }
            if p >= r {
                return true;
            }
            i += 1;
        }
    }
}

/// True with probability `e^{-1/2}` (von Neumann): with `1/2 > U1 > U2 > ... > Un`
/// the longest decreasing run, `P(n >= i) = 2^{-i}/i!`, and `P(n even) = e^{-1/2}`.
fn exp_minus_half<R: Rng + ?Sized>(bits: &mut Bits<R>) -> bool {
    let mut p = URand::default();
    if p.digit(0, bits) >> (DIGIT - 1) == 1 {
        return true; // U1 >= 1/2: n = 0
    }
    loop {
        let mut q = URand::default();
        if !q.less(&mut p, bits) {
            return false; // run ended with n odd
        }
        p = URand::default();
        if !p.less(&mut q, bits) {
            return true; // n even
        }
    }
}

/// Uniform integer in `[0, m)`, `2 <= m <= 2^32`, by exact rejection.
fn uniform_below<R: Rng + ?Sized>(m: u64, bits: &mut Bits<R>) -> u64 {
    let nb = 64 - (m - 1).leading_zeros();
    loop {
        let v = bits.take(nb);
        if v < m {
            return v;
        }
    }
}

/// Karney's Algorithm B: true with probability `e^{-x(2k+x)/(2k+2)}`. Finds the
/// longest run with `x > U1 > ... > Un` and `V_i < (x + 2k)/(2k + 2)` for all
/// `i <= n`; then `P(n >= i) = p^i / i!` with `p = x(2k+x)/(2k+2)`, and
/// `P(n even) = e^{-p}`. The test on `V_i` is: with probability `2k/(2k+2)`
/// pass, with `1/(2k+2)` fail, with `1/(2k+2)` pass iff a fresh u-rand `< x`.
fn exp_b<R: Rng + ?Sized>(k: u64, x: &mut URand, bits: &mut Bits<R>) -> bool {
    let m = 2 * k + 2;
    let mut y: Option<URand> = None; // the previous U; `None` means x
    let mut even = true;
    loop {
        let mut z = URand::default();
        let below = match y.as_mut() {
            Some(y) => z.less(y, bits),
            None => z.less(x, bits),
        };
        if !below {
            return even;
        }
        let f = uniform_below(m, bits);
        if f == m - 1 {
            return even;
        }
        if f == m - 2 && !URand::default().less(x, bits) {
            return even;
        }
        y = Some(z);
        even = !even;
    }
}

/// Karney's Algorithm N: `(negative, k, x)` with `Z = ±(k + x)` exactly N(0,1).
fn normal_parts<R: Rng + ?Sized>(bits: &mut Bits<R>) -> (bool, u64, URand) {
    'restart: loop {
        let mut k = 0u64; // N1
        while exp_minus_half(bits) {
            k += 1;
        }
        for _ in 0..(k as u128) * (k as u128).saturating_sub(1) {
            if !exp_minus_half(bits) {
                continue 'restart; // N2
            }
        }
        let mut x = URand::default(); // N3
        for _ in 0..=k {
            if !exp_b(k, &mut x, bits) {
                continue 'restart; // N4
            }
        }
        return (bits.take(1) == 1, k, x); // N5
    }
}

/// `floor(b + 1/2 + s·σ(k + x))` with `σ = -1` iff `neg`, decided exactly.
fn round_exact<R: Rng + ?Sized>(
    b_num: u64,
    shift: u32,
    s: f64,
    (neg, k, x): (bool, u64, &mut URand),
    bits: &mut Bits<R>,
) -> i64 {
    assert!(k < 1 << 20, "k >= 2^20 (probability < e^-(2^39))");
    // s = mant · 2^e with mant odd, 2^(len+e-1) <= s < 2^(len+e).
    let raw = s.to_bits();
    let mant = (raw & ((1 << 52) - 1)) | (1 << 52);
    let tz = mant.trailing_zeros();
    let (mant, e) = ((mant >> tz) as i128, ((raw >> 52) & 0x7ff) as i32 - 1075 + tz as i32);
    let len = 128 - mant.leading_zeros() as i32;
    let sh = shift as i32;
    let two_b1 = 2 * b_num as i128 + (1i128 << sh); // (b + 1/2)·2^(sh+1)

    // Phase 1: x in (X/2^m1, (X+1)/2^m1), width of u below 2^-4. All values
    // are scaled by 2^d, d <= 57, and stay below 2^118 in magnitude.
    let m1 = len + e + 4; // 5..=45
    while ((x.n * DIGIT) as i32) < m1 {
        x.digit(x.n, bits);
    }
    let a = ((k as i128) << m1) + (x.head >> (64 - m1)) as i128;
    let d = (sh + 1).max(m1 - e);
    let (c, sc) = (two_b1 << (d - sh - 1), d - m1 + e);
    let (lo, hi) = if neg {
        (c - ((mant * (a + 1)) << sc), c - ((mant * a) << sc))
    } else {
        (c + ((mant * a) << sc), c + ((mant * (a + 1)) << sc))
    };
    let n = (lo >> d) + 1; // smallest integer above u_lo
    if (n << d) >= hi {
        return (n - 1) as i64; // no integer inside (u_lo, u_hi)
    }

    // Phase 2: u < n iff x < x* (σ = +) or x > x* (σ = -), where
    // x* = σ(n - b - 1/2)/s - k = p / r, both scaled by 2^f (e + f >= 0).
    let f = (sh + 1).max(-e);
    let (cf, skf, nf) = (two_b1 << (f - sh - 1), ((k as i128) * mant) << (e + f), n << f);
    let p = if neg { cf - nf - skf } else { nf - cf - skf };
    let below = x.less_than_ratio(p, mant << (e + f), bits);
    if below != neg {
        (n - 1) as i64
    } else {
        n as i64
    }
}

/// Exact `round(b + s Z)`, `Z ~ N(0,1)`, `b = b_num / 2^shift`.
///
/// Requires `shift <= 48`, `b_num < 2^shift` and finite `s` in `[1, 2^40]`
/// (asserted: the exactness argument needs them). Halves round up; they have probability 0.
pub fn rounded_gaussian<R: Rng + ?Sized>(b_num: u64, shift: u32, s: f64, rng: &mut R) -> i64 {
    assert!(shift <= 48 && b_num >> shift == 0, "need b_num < 2^shift, shift <= 48");
    assert!(s.is_finite() && (1.0..=(1u64 << 40) as f64).contains(&s), "need s in [1, 2^40]");
    let mut bits = Bits::new(rng);
    let (neg, k, mut x) = normal_parts(&mut bits);
    round_exact(b_num, shift, s, (neg, k, &mut x), &mut bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigInt;
    use rand::rngs::ChaCha20Rng;
    use rand::SeedableRng;
    use std::f64::consts::SQRT_2;

    /// Upper standard normal tail `1 - Phi(z)`.
    fn q(z: f64) -> f64 {
        0.5 * libm::erfc(z / SQRT_2)
    }

    /// Probability that `Z` lies in `(lo, hi)`, avoiding cancellation in the tails.
    fn p_between(lo: f64, hi: f64) -> f64 {
        if lo > 0.0 {
            q(lo) - q(hi)
        } else {
            q(-hi) - q(-lo)
        }
    }

    /// Wilson-Hilferty upper quantile of chi-square(df) at normal deviate z.
    fn chi2_quantile(df: f64, z: f64) -> f64 {
        let a = 2.0 / (9.0 * df);
        df * (1.0 - a + z * a.sqrt()).powi(3)
    }

    fn mant_exp(s: f64) -> (i128, i32) {
        // Independent of round_exact: scale s by powers of two until integral.
        let mut e = 0i32;
        let mut m = s;
        while m.fract() != 0.0 {
            m *= 2.0;
            e -= 1;
        }
        (m as i128, e)
    }

    /// Assert exactly that j <= b + 1/2 + s·σ(k + x) <= j + 1 at both ends of
    /// x's 320-bit prefix interval (big-integer arithmetic, no rounding).
    fn check_exact(
        b_num: u64,
        shift: u32,
        s: f64,
        (neg, k, x): (bool, u64, &mut URand),
        j: i64,
        bits: &mut Bits<ChaCha20Rng>,
    ) {
        const P: u32 = 320;
        x.digit(P / DIGIT - 1, bits);
        let mut v = BigInt::from(x.head);
        for w in 0..(P / 64 - 1) as usize {
            v = (v << 64) + BigInt::from(x.tail[w]);
        }
        let (mant, e) = mant_exp(s);
        let qd = shift + 1 + P + 52;
        let c = BigInt::from(2 * b_num as i128 + (1i128 << shift)) << (P + 52);
        let one = BigInt::from(1) << qd;
        let lo_cell = BigInt::from(j) * &one;
        let hi_cell = &lo_cell + &one;
        for add in 0..2u32 {
            let a = (BigInt::from(k) << P) + &v + add;
            let term = (BigInt::from(mant) * a) << (shift as i32 + 1 + 52 + e) as u32;
            let u = if neg { &c - term } else { &c + term };
            assert!(lo_cell <= u && u <= hi_cell, "wrong cell j={j} b={b_num}/2^{shift} s={s} neg={neg} k={k}");
        }
    }

    fn draw_checked(b_num: u64, shift: u32, s: f64, rng: &mut ChaCha20Rng) -> (i64, u32) {
        let mut bits = Bits::new(rng);
        let (neg, k, mut x) = normal_parts(&mut bits);
        let j = round_exact(b_num, shift, s, (neg, k, &mut x), &mut bits);
        let used = x.n * DIGIT;
        check_exact(b_num, shift, s, (neg, k, &mut x), j, &mut bits);
        (j, used)
    }

    const B_CASES: [(u64, u32, f64); 3] = [(0, 0, 0.0), (1, 2, 0.25), (13, 4, 0.8125)];

    #[test]
    fn chi_square_cells() {
        let n = 200_000u64;
        let mut seed = 1000;
        for &s in &[1.0, 1.7, 16.0, 23.5] {
            for &(b_num, shift, b) in &B_CASES {
                seed += 1;
                let mut rng = ChaCha20Rng::seed_from_u64(seed);
                let jlo = (b - 10.0 * s).floor() as i64;
                let jhi = (b + 10.0 * s).ceil() as i64;
                let mut counts = vec![0u64; (jhi - jlo + 1) as usize];
                for _ in 0..n {
                    let j = rounded_gaussian(b_num, shift, s, &mut rng).clamp(jlo, jhi);
                    counts[(j - jlo) as usize] += 1;
                }
                // Cell probabilities; the end cells absorb the tails.
                let probs: Vec<f64> = (jlo..=jhi)
                    .map(|j| {
                        let lo = if j == jlo { f64::NEG_INFINITY } else { (j as f64 - 0.5 - b) / s };
                        let hi = if j == jhi { f64::INFINITY } else { (j as f64 + 0.5 - b) / s };
                        p_between(lo, hi)
                    })
                    .collect();
                let total: f64 = probs.iter().sum();
                assert!((total - 1.0).abs() < 1e-12, "probabilities sum to {total}");
                // Pool left to right until each bin expects >= 20.
                let mut bins: Vec<(f64, u64)> = Vec::new();
                let (mut ep, mut oc) = (0.0, 0u64);
                for (p, c) in probs.iter().zip(&counts) {
                    ep += p * n as f64;
                    oc += c;
                    if ep >= 20.0 {
                        bins.push((ep, oc));
                        (ep, oc) = (0.0, 0);
                    }
                }
                let last = bins.last_mut().unwrap();
                last.0 += ep;
                last.1 += oc;
                let stat: f64 = bins.iter().map(|&(e, o)| (o as f64 - e).powi(2) / e).sum();
                let df = (bins.len() - 1) as f64;
                let thr = chi2_quantile(df, 5.5);
                println!("chi2 s={s:5} b={b:6}: stat={stat:8.2} df={df:3} threshold={thr:7.2}");
                assert!(stat < thr, "chi-square {stat} >= {thr} (df {df}) for s={s}, b={b}");
            }
        }
    }

    fn normal_f64(bits: &mut Bits<ChaCha20Rng>) -> f64 {
        let (neg, k, mut x) = normal_parts(bits);
        x.digit(64 / DIGIT - 1, bits);
        let v = k as f64 + x.head as f64 / 18446744073709551616.0;
        if neg {
            -v
        } else {
            v
        }
    }

    #[test]
    fn normal_ks_and_moments() {
        let n = 200_000usize;
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let mut bits = Bits::new(&mut rng);
        let mut z: Vec<f64> = (0..n).map(|_| normal_f64(&mut bits)).collect();
        let m: Vec<f64> = (1..=4).map(|p| z.iter().map(|v| v.powi(p)).sum::<f64>() / n as f64).collect();
        z.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut d = 0.0f64;
        for (i, &v) in z.iter().enumerate() {
            let f = 1.0 - q(v);
            d = d.max(f - i as f64 / n as f64).max((i + 1) as f64 / n as f64 - f);
        }
        let thr = 3.0 / (n as f64).sqrt(); // P(sqrt(n) D > 3) ~ 2 e^-18
        println!("KS D={d:.5} (threshold {thr:.5}); moments {m:?}");
        assert!(d < thr);
        // Moments 0, 1, 0, 3 with standard errors sqrt(1, 2, 15, 96)/sqrt(n); allow 6 SE.
        for (i, (&got, (want, var))) in m.iter().zip([(0.0, 1.0), (1.0, 2.0), (0.0, 15.0), (3.0, 96.0)]).enumerate() {
            let se = f64::sqrt(var / n as f64);
            assert!((got - want).abs() < 6.0 * se, "moment {}: {got} vs {want}", i + 1);
        }
    }

    #[test]
    fn bernoulli_components() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut bits = Bits::new(&mut rng);
        let n = 1_000_000;
        let hits = (0..n).filter(|_| exp_minus_half(&mut bits)).count();
        let (p, got) = ((-0.5f64).exp(), hits as f64 / n as f64);
        let se = (p * (1.0 - p) / n as f64).sqrt();
        println!("exp(-1/2): {got:.5} vs {p:.5}");
        assert!((got - p).abs() < 6.0 * se);
        // Algorithm B with x pinned to a 64-bit prefix (x known to 2^-64).
        for (k, xv) in [(0u64, 0.9), (1, 0.3), (2, 0.5), (3, 0.77), (5, 0.6)] {
            let head = (xv * 18446744073709551616.0) as u64;
            let xr = head as f64 / 18446744073709551616.0;
            let p = (-xr * (2.0 * k as f64 + xr) / (2.0 * k as f64 + 2.0)).exp();
            let hits = (0..n)
                .filter(|_| {
                    let mut x = URand { head, tail: Vec::new(), n: 64 / DIGIT };
                    exp_b(k, &mut x, &mut bits)
                })
                .count();
            let got = hits as f64 / n as f64;
            println!("algorithm B k={k} x={xv}: {got:.5} vs {p:.5}");
            assert!((got - p).abs() < 6.0 * (p * (1.0 - p) / n as f64).sqrt());
        }
    }

    #[test]
    fn rounding_exact_random_draws() {
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let half = 1u64 << 47; // b = 1/2 + delta·2^-48: b + k within 2^-40 of k + 1/2
        let mut configs: Vec<(u64, u32, f64)> =
            [half - 3, half - 1, half + 1, half + 2, half + 255].iter().map(|&b| (b, 48, 1.0)).collect();
        configs.extend([(0, 0, 1.0), (13, 4, 1.7), (1, 2, 23.5), (12345, 20, 1.0 + f64::EPSILON)]);
        configs.extend([(7, 3, (1u64 << 40) as f64), (u64::MAX >> 16, 48, 1099511627775.9998), (3, 2, 24.0)]);
        configs.push((u64::MAX >> 16, 48, (1u64 << 40) as f64));
        let mut max_bits = 0;
        for &(b_num, shift, s) in &configs {
            for _ in 0..20_000 {
                max_bits = max_bits.max(draw_checked(b_num, shift, s, &mut rng).1);
            }
        }
        println!("most bits of x used by a decision: {max_bits}");
    }

    #[test]
    fn rounding_exact_near_boundaries() {
        // Pin x to a 192-bit prefix of the rational x* where b + s·σ(k+x) is a
        // half-integer, so the decision must read ~192 bits (phase 2 deep).
        let mut rng = ChaCha20Rng::seed_from_u64(2024);
        let (mut sides, mut deep) = ([0u32; 2], 0u32);
        for trial in 0..3000u64 {
            let s = match trial % 7 {
                0 => 1.0,
                1 => 1.7,
                2 => 23.5,
                3 => 1.0 + (rng.next_u64() >> 12) as f64 / 4503599627370496.0, // [1, 2), full mantissa
                4 => 1099511627775.9998,
                5 => (1u64 << 40) as f64,
                _ => f64::from_bits((rng.next_u64() % (40 << 52)) + (1023 << 52)), // [1, 2^40)
            };
            let shift = [0u32, 3, 48][(trial % 3) as usize];
            let b_num = if shift == 0 { 0 } else { rng.next_u64() >> (64 - shift) };
            let k = rng.next_u64() % 5;
            let neg = rng.next_u64() & 1 == 1;
            let (mant, e) = mant_exp(s);
            // Everything over 2^q0: u(x) = c + σ s (k + x).
            let q0 = shift + 1 + 52;
            let c = BigInt::from(2 * b_num as i128 + (1i128 << shift)) << 52;
            let sd = BigInt::from(mant) << (q0 as i32 + e) as u32; // s·2^q0
            let sig = |v: BigInt| if neg { -v } else { v };
            let (u0, u1) = (&c + sig(&sd * k), &c + sig(&sd * (k + 1)));
            let (umin, umax) = if neg { (u1, u0) } else { (u0, u1) };
            let one = BigInt::from(1) << q0;
            let first = (&umin >> q0) + 1; // floor division: smallest integer > umin
            if &first * &one >= umax {
                continue;
            }
            let count = (&umax - &first * &one - 1u32) / &one + 1u32; // integers in (umin, umax)
            let pick = BigInt::from(rng.next_u64()) % count;
            let n = &first + pick;
            // x* = (σ(n - c) - s k)/s.
            let num = sig(&n * &one - &c) - &sd * k;
            let mut xp = (&num << 192u32) / &sd;
            let jump = rng.next_u64() % 3; // 0: contains x*, 1: just below, 2: just above
            if jump == 1 {
                xp -= 1;
            } else if jump == 2 {
                xp += 1;
            }
            let words = xp.to_u64_digits().1;
            if words.len() != 3 || xp.sign() != num_bigint::Sign::Plus {
                continue; // x* too close to 0 or 1 for the perturbed prefix
            }
            let mut x = URand { head: words[2], tail: vec![words[1], words[0]], n: 192 / DIGIT };
            let mut bits = Bits::new(&mut rng);
            let j = round_exact(b_num, shift, s, (neg, k, &mut x), &mut bits);
            let n64 = i64::try_from(n).unwrap();
            assert!(j == n64 - 1 || j == n64);
            if jump != 0 {
                // below x*: u < n iff σ = +.
                let below_u = (jump == 1) != neg;
                assert_eq!(j, if below_u { n64 - 1 } else { n64 });
            }
            sides[(j - n64 + 1) as usize] += 1;
            deep += (x.n * DIGIT > 192) as u32;
            check_exact(b_num, shift, s, (neg, k, &mut x), j, &mut bits);
        }
        println!("near-boundary decisions: below {} above {}; read past 192 bits: {deep}", sides[0], sides[1]);
        assert!(sides[0] > 500 && sides[1] > 500);
    }

    #[test]
    fn deterministic_for_seed() {
        let run = |seed| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            (0..2000).map(|_| rounded_gaussian(13, 4, 23.5, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    /// Counts `next_u64` calls (for the cost report).
    struct Counting(ChaCha20Rng, u64);
    impl rand::TryRng for Counting {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(self.try_next_u64()? as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            self.1 += 1;
            Ok(self.0.next_u64())
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            self.0.fill_bytes(dst);
            Ok(())
        }
    }

    #[test]
    #[ignore]
    fn timing() {
        for s in [1.0, 24.0, 1e6] {
            let mut rng = Counting(ChaCha20Rng::seed_from_u64(1), 0);
            let n = 2_000_000;
            let t = std::time::Instant::now();
            let mut acc = 0i64;
            for _ in 0..n {
                acc = acc.wrapping_add(rounded_gaussian(0, 0, s, &mut rng));
            }
            let ns = t.elapsed().as_nanos() as f64 / n as f64;
            let words = rng.1 as f64 / n as f64;
            println!("s={s}: {ns:.1} ns/draw, {words:.3} next_u64/draw (DIGIT={DIGIT}, checksum {acc})");
        }
    }
}
