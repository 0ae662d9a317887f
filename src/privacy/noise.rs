//! The secret randomness of a release: where it comes from ([`NoiseSource`])
//! and exact Bernoulli(q) coins for Poisson sampling (the Gaussian noise is
//! in [`crate::privacy::rounded_gaussian`]).
//!
//! Everything here consumes one `rand::Rng` stream; [`crate::privacy::mechanism`] uses a
//! single ChaCha20 stream per release for both the Poisson sample and the noise.
//! See the `mechanism` module docs for why and for the guarantee.

use rand::rngs::{ChaCha20Rng, SysRng};
use rand::{Rng, SeedableRng, TryRng};

use crate::error::{EpsvecError, Result};

/// Where the secret randomness of a release (Poisson sample and noise) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoiseSource {
    /// ChaCha20 keyed with 256 bits from the operating system (`getrandom`).
    /// Failing to get entropy is an error, never a fallback to a weaker source.
    Os,
    /// ChaCha20 keyed from a fixed `u64` (`SeedableRng::seed_from_u64`).
    /// **Only for tests and reproducible examples**: anyone who knows or guesses
    /// the seed can subtract the noise. A release made with it reports
    /// `seeded = true`, and the vector file must record that.
    Seeded(u64),
}

impl NoiseSource {
    /// True for [`NoiseSource::Seeded`].
    pub fn is_seeded(&self) -> bool {
        matches!(self, NoiseSource::Seeded(_))
    }

    /// The ChaCha20 generator of one release.
    pub fn rng(&self) -> Result<ChaCha20Rng> {
        match *self {
            NoiseSource::Os => {
                let mut key = [0u8; 32];
                SysRng.try_fill_bytes(&mut key).map_err(|e| {
                    EpsvecError::Privacy(format!(
                        "cannot obtain entropy from the operating system for the privacy noise: {e}"
                    ))
                })?;
                Ok(ChaCha20Rng::from_seed(key))
            }
            NoiseSource::Seeded(seed) => Ok(ChaCha20Rng::seed_from_u64(seed)),
        }
    }
}

/// 2^-53.
#[cfg(test)]
const TWO_POW_M53: f64 = 1.0 / 9_007_199_254_740_992.0;

/// Uniform on the 2^53-point grid `{0, 2^-53, ..., 1 - 2^-53}`.
#[cfg(test)]
fn uniform_co<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * TWO_POW_M53
}

/// Uniform on the 2^53-point grid `{2^-53, ..., 1}` (never 0, so `ln` is finite).
#[cfg(test)]
fn uniform_oc<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    ((rng.next_u64() >> 11) + 1) as f64 * TWO_POW_M53
}

/// A Bernoulli coin with success probability **exactly** `q` (the real number
/// the f64 `q` denotes), for `q` in `[0, 1]`.
///
/// Every f64 in `(0, 1)` is `m / 2^e` with an integer `m < 2^53` and `e >= 53`.
/// With `U` uniform on `[0, 2^e)` (i.e. `e` fair bits), `P(U < m) = q`, and
/// `U < m` holds iff the leading `e - 53` bits of `U` are zero and its last 53
/// bits, as an integer, are `< m`. The bits come from independent words of
/// the generator; a run of leading bits is abandoned as soon as one is set.
/// Expected cost: one or two `u64` draws for `q >= 2^-11`.
pub fn bernoulli_exact<R: Rng + ?Sized>(q: f64, rng: &mut R) -> bool {
    if q >= 1.0 {
        return true;
    }
    if q.is_nan() || q <= 0.0 {
        return false;
    }
    let bits = q.to_bits();
    let exp_field = (bits >> 52) as i64; // sign bit is 0 here
    let frac = bits & ((1u64 << 52) - 1);
    let (m, e) = if exp_field == 0 {
        (frac, 1074i64) // subnormal: q = frac * 2^-1074
    } else {
        (frac | (1u64 << 52), 1075 - exp_field) // q = m * 2^(exp_field - 1075)
    };
    debug_assert!(e >= 53);
    let mut zeros = e - 53;
    while zeros >= 64 {
        if rng.next_u64() != 0 {
            return false;
        }
        zeros -= 64;
    }
    if zeros > 0 && rng.next_u64() >> (64 - zeros) != 0 {
        return false;
    }
    (rng.next_u64() >> 11) < m
}

/// Poisson sampling: the indices in `0..n` of the records kept, each kept
/// independently with probability exactly `q` ([`bernoulli_exact`]), in
/// increasing order. `q >= 1` keeps everything without drawing.
pub fn poisson_sample<R: Rng + ?Sized>(n: usize, q: f64, rng: &mut R) -> Vec<usize> {
    if q >= 1.0 {
        return (0..n).collect();
    }
    (0..n).filter(|_| bernoulli_exact(q, rng)).collect()
}

/// A standard normal draw by the Box–Muller transform on 53-bit uniforms,
/// for the tests' synthetic data only: releases draw their noise exactly
/// ([`crate::privacy::rounded_gaussian`]).
#[cfg(test)]
pub fn standard_normal_pair<R: Rng + ?Sized>(rng: &mut R) -> (f64, f64) {
    let u1 = uniform_oc(rng);
    let u2 = uniform_co(rng);
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}
