//! The Gaussian mechanism that releases a dataset vector: the only step of
//! epsvec that reads private data and lets something derived from it out.
//!
//! # What is released, what is protected
//!
//! Input: one term `d_i` per private record (`n x dim`, row-major f32; in
//! epsvec the concatenation over the released layers of the record's pooled
//! state minus the mean pooled state of the public negatives, a function of
//! that record and public data only: see [`crate::privacy::release`]).
//! Output: **one noisy sum**,
//!
//! ```text
//! noisy = Grid( sum_{i in S} clip(d_i) + N(0, (sigma C)^2 I_dim) )
//! ```
//!
//! with `S` all records (`sample_rate = 1`) or a Poisson sample of them, and
//! `Grid` a rounding to a fixed lattice described below. The unit of privacy is
//! one private record (one row); what is protected is whether any one record
//! was in the dataset, and its contents.
//!
//! * **Adjacency**: add/remove one record. The L2 sensitivity of the sum of
//!   clipped rows is then `C = clip_norm` (exactly, see "Exactness").
//!   Substitution (replace one record) has sensitivity `2C`; this function does
//!   not care which adjacency is meant — the accountant
//!   ([`crate::privacy::accounting::gaussian_sigma`] with `Adjacency::Substitution`)
//!   returns the larger `sigma` for it.
//! * **`sigma` is in units of `C`**: the noise standard deviation per
//!   coordinate is `sigma * clip_norm` (reported as [`ReleaseReport::noise_std`]),
//!   exactly the convention of the accountant. Pass its `sigma` unchanged, with
//!   the same `sample_rate`.
//! * **Post-processing**: [`normalise_layers`] (per-layer unit vectors), the
//!   output rounding `Grid`, steering and any amount of generation use only the
//!   released vector and public constants, so they cost no privacy.
//! * The caller must choose `clip_norm`, `sigma` and `sample_rate` without
//!   looking at the private data (METHOD.md section 4); in particular a
//!   `sample_rate = n / N` computed from the private count `N` reveals `N` when
//!   it is published. Treat `N` as public (a known dataset size) or say so.
//!
//! # The algorithm
//!
//! 1. **Validation** of every parameter before anything is drawn. Given rows
//!    ([`release_noisy_sum`]) are all checked, sampled or not: a NaN or
//!    infinite entry is an error, so whether the call fails depends on the
//!    data only, not on the secret sample. Terms computed after the sample is
//!    drawn ([`PrivateRelease::offer`]) cannot be checked in advance; a
//!    non-finite one counts as zero (a fixed value of norm `<= C`).
//! 2. **Poisson sampling** (if `sample_rate < 1`): each record is kept
//!    independently with probability **exactly** `q` (the real number the f64
//!    denotes; [`crate::privacy::noise::bernoulli_exact`]), using the same secret
//!    ChaCha20 stream as the noise. The sample is never returned.
//! 3. **Clipping** ([`crate::privacy::clip::clip_row`]): `c_i = d_i * min(1, C/||d_i||)`
//!    in f64, jointly over all released layers.
//! 4. **Exact fixed-point sum**: each `c_i` is put on the grid
//!    `gamma = C 2^-32` by truncation toward zero, giving an integer vector
//!    `r_i` whose norm bound `||r_i||_2 <= 2^32` is **verified in exact integer
//!    arithmetic** ([`crate::privacy::clip::quantise_row`]); the sum `T = sum_{i in S} r_i`
//!    is exact (`i128`), independent of summation order. Truncation moves each
//!    coordinate by less than `gamma` toward zero (a relative change of about
//!    `2^-32`; irrelevant for utility).
//! 5. **Noise and output grid**: with `Gamma = C 2^(j - 32)`, the largest such
//!    power-of-two multiple of `gamma` with `Gamma <= sigma C / 16` (`j >= 0`),
//!    the released coordinate is
//!
//!    ```text
//!    noisy_k = Gamma * round( (gamma T_k + sigma C Z_k) / Gamma ),   Z_k ~ N(0, 1) iid,
//!    ```
//!
//!    computed as `Gamma * (A_k + round(b_k + s Z_k))` where `T_k = A_k 2^j + B_k`
//!    (`0 <= B_k < 2^j`), `b_k = B_k / 2^j` (exact in f64) and
//!    `s = sigma C / Gamma` in `[16, 32)` (larger only when `j = 0`, i.e.
//!    `sigma < 16 * 2^-32`). The output lies on the data-independent lattice
//!    `Gamma Z^dim` ([`ReleaseReport::grid`]).
//!
//! # The guarantee, and exactly how far it goes
//!
//! **Ideal mechanism.** Write `M*(D) = Grid_Gamma(gamma T(D) + sigma C Z)` with a
//! real-valued exact Gaussian `Z`. Every `gamma r_i` has L2 norm `<= C` (checked
//! exactly), the sample is an exact Poisson sample with rate `q`, and the
//! rounding is a fixed function of the Gaussian mechanism's output. So `M*` is a
//! post-processing of precisely the mechanism analysed in
//! [`crate::privacy::accounting`] (Poisson-subsampled Gaussian, sensitivity `C`,
//! noise `sigma C`), and inherits its `(eps, delta)` for every `delta(eps)` that
//! the accountant's profile gives — including `q < 1` and both adjacencies.
//!
//! **What the code computes is exactly `M*`.** The only random draws are the
//! Poisson coins ([`crate::privacy::noise::bernoulli_exact`]: exact for the
//! real number `q`) and, per coordinate, `round(b_k + s Z_k)` with `Z_k` an
//! exact standard normal: [`crate::privacy::rounded_gaussian`] draws it with
//! Karney's exact normal sampler (ACM TOMS 2016: random bits and comparisons
//! of lazily refined uniforms, no floating point) and decides the rounding in
//! exact integer arithmetic (`b_k` and `s` are dyadic; digits of the deviate
//! are drawn until the rounding cell is certain). Since `s = sigma C / Gamma`
//! and `b_k = T_k / 2^j - A_k` exactly, `Gamma (A_k + round(b_k + s Z_k))`
//! equals `Grid_Gamma(gamma T_k + sigma C Z_k)`. So, if the ChaCha20 stream is
//! indistinguishable from uniform bits (the standard assumption on a CSPRNG),
//! the released vector has exactly the distribution of `M*`, and the
//! accountant's `(eps, delta)` holds for it with no floating-point residual,
//! at any eps and any dimension. (Earlier versions used Box-Muller on 53-bit
//! uniforms, whose error put an estimated `(1 + e^eps) dim 2^-40` on delta:
//! about 2e-2 at eps 16 and 16k dimensions.)
//!
//! **Floating-point attacks.** Mironov (CCS 2012) showed that releasing
//! `fl(x + fl(noise))` with a floating-point Laplace/Gaussian leaks `x`: which
//! f64 values are reachable (and with what probability) depends on `x`, and the
//! low-order bits identify it, sometimes exactly. Here the output lattice
//! `Gamma Z^dim` is fixed by the public `(C, sigma)`, the data enter only as an
//! exact integer, and the noise on the lattice is exact. The price of the
//! lattice is a rounding of `Gamma <= sigma C / 16`: it adds at most
//! `Gamma^2 / 12 <= (sigma C)^2 / 3072` to the variance of each coordinate (a
//! 0.03% change in noise power).
//!
//! # What leaves this function, and what must not leave the curator
//!
//! [`Release::noisy`] and [`ReleaseReport`] may be published: the report
//! holds only functions of the public parameters (`sigma`, `C`, `q`, `dim`,
//! the grid, whether the source was seeded).
//!
//! [`PrivateCounts`] (`records_in`, `records_used`, `clipped`) are exact
//! statistics of the private data **without any noise**: `records_in` is `|D|`,
//! which add/remove adjacency protects; `records_used = |S|` additionally
//! leaks the secret sample's size (under sampling, releasing it weakens the
//! amplification the accountant credits); `clipped` counts records with norm
//! above `C`. They are returned in a separate struct, for the curator's own
//! checks (e.g. "is C so small that everything is clipped?"), and must never be
//! written into the vector file, public logs or anything else that is
//! released. Releasing any of them is a separate, unaccounted query. (A DP
//! count would need its own budget; the method does not need one, since the
//! per-layer normalisation makes the release scale-free.)
//!
//! Errors (`EpsvecError`) describe the call, not the secret randomness, and go
//! to the curator. The noise is drawn from [`NoiseSource::Os`] unless a test
//! asks for [`NoiseSource::Seeded`], which is reported (`seeded = true`) and
//! must be recorded with the vector.

use rand::Rng;

use crate::error::{EpsvecError, Result};
use crate::privacy::clip::FRAC_BITS;
#[cfg(test)]
use crate::privacy::clip::{clip_row, quantise_row};
pub use crate::privacy::release::PrivateRelease;
use crate::privacy::rounded_gaussian::rounded_gaussian;

pub use crate::privacy::clip::clip_rows;
pub use crate::privacy::noise::{poisson_sample, NoiseSource};

/// Smallest and largest accepted `clip_norm` (keeps `C 2^±52` finite and normal).
pub const CLIP_NORM_RANGE: (f64, f64) = (1e-100, 1e100);
/// Largest accepted noise multiplier (keeps the output-grid offset exact in f64).
pub const SIGMA_MAX: f64 = 1_048_576.0; // 2^20
/// Smallest accepted noise multiplier (keeps the noise at least 4 fine-grid steps).
pub const SIGMA_MIN: f64 = 1.0 / 1_073_741_824.0; // 2^-30
/// The output grid is the largest `C 2^(j-32)` with at most `sigma C / OUT_STEPS`.
const OUT_STEPS: f64 = 16.0;

/// How the noise is made, for reports (one place, beside the code it describes).
pub const NOISE_DESCRIPTION: &str = "ChaCha20 CSPRNG keyed from the OS unless seeded for tests (one stream for \
    the Poisson coins and the noise); exact fixed-point sum of the clipped terms; Gaussian noise sampled exactly \
    (Karney's exact normal) and rounded exactly to a public lattice of spacing between sigma*C/32 and sigma*C/16 \
    (C 2^-32 for sigma below 2^-28)";

/// Publishable description of a release: functions of the public parameters only.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseReport {
    /// Noise standard deviation per coordinate before the output rounding: `sigma * clip_norm`.
    pub noise_std: f64,
    /// Spacing `Gamma` of the output lattice: every released value is an integer multiple of it.
    pub grid: f64,
    /// The noise multiplier `sigma` (units of `clip_norm`).
    pub sigma: f64,
    /// The clip norm `C`.
    pub clip_norm: f64,
    /// The Poisson sampling rate `q` (1 = every record used).
    pub sample_rate: f64,
    /// Length of the released vector.
    pub dim: usize,
    /// True when the noise came from [`NoiseSource::Seeded`]: NOT private.
    pub seeded: bool,
}

/// Exact, noiseless counts of the private data. **Not differentially private:
/// never publish** (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateCounts {
    /// Number of private records passed in (`|D|`).
    pub records_in: usize,
    /// Number of records in the secret Poisson sample (`records_in` when `q = 1`).
    pub records_used: usize,
    /// Number of used records whose norm exceeded `clip_norm`.
    pub clipped: usize,
}

/// The result of [`release_noisy_sum`].
#[derive(Debug, Clone)]
pub struct Release {
    /// The released noisy sum (length `dim`), on the lattice `report.grid * Z`.
    pub noisy: Vec<f64>,
    /// Publishable parameters of the release.
    pub report: ReleaseReport,
    /// Curator-only diagnostics; not private, never publish.
    pub private: PrivateCounts,
}

/// The Gaussian mechanism of epsvec: per-record difference vectors `rows`
/// (`n x dim`, row-major f32) to one noisy sum of their clipped versions; see
/// the module docs for the steps and the guarantee.
///
/// `clip_norm` (`C`) and `sigma` must be finite and positive (`C` within
/// [`CLIP_NORM_RANGE`], `sigma <= SIGMA_MAX`) and `sample_rate` in `(0, 1]`
/// (`EpsvecError::Privacy` otherwise); `dim > 0`, `rows.len()` a multiple of
/// `dim`, and every entry finite (`EpsvecError::InvalidInput` otherwise).
/// `n = 0` is allowed (the release is pure noise).
pub fn release_noisy_sum(
    rows: &[f32],
    dim: usize,
    clip_norm: f64,
    sigma: f64,
    sample_rate: f64,
    source: &NoiseSource,
) -> Result<Release> {
    validate(rows, dim, clip_norm, sigma, sample_rate)?;
    let mut rng = source.rng()?;
    release_with_rng(rows, dim, clip_norm, sigma, sample_rate, source.is_seeded(), &mut rng)
}

/// [`release_noisy_sum`] on a caller-supplied generator (tests reuse one stream):
/// the same path as every release, [`PrivateRelease`].
pub(crate) fn release_with_rng<R: Rng + ?Sized>(
    rows: &[f32],
    dim: usize,
    clip_norm: f64,
    sigma: f64,
    sample_rate: f64,
    seeded: bool,
    rng: &mut R,
) -> Result<Release> {
    validate(rows, dim, clip_norm, sigma, sample_rate)?;
    let mut release = PrivateRelease::with_rng(dim, clip_norm, sample_rate, seeded, rng);
    release.offer_rows(rows)?;
    Ok(release.finish(&[sigma])?.remove(0))
}

/// Splits a released vector (the concatenation of `n_layers` equal blocks)
/// into per-layer unit vectors. Pure post-processing. Errors
/// (`InvalidInput`) when `n_layers` is 0 or does not divide the length, or a
/// block has zero or non-finite norm.
pub fn normalise_layers(noisy: &[f64], n_layers: usize) -> Result<Vec<Vec<f32>>> {
    if n_layers == 0 || noisy.is_empty() || noisy.len() % n_layers != 0 {
        return Err(EpsvecError::InvalidInput(format!(
            "cannot split a vector of length {} into {n_layers} equal non-empty layers",
            noisy.len()
        )));
    }
    let width = noisy.len() / n_layers;
    noisy
        .chunks_exact(width)
        .enumerate()
        .map(|(l, block)| {
            let norm = block.iter().map(|x| x * x).sum::<f64>().sqrt();
            if !(norm.is_finite() && norm > 0.0) {
                return Err(EpsvecError::InvalidInput(format!(
                    "layer {l} of the released vector has norm {norm}; it cannot be normalised"
                )));
            }
            Ok(block.iter().map(|&x| (x / norm) as f32).collect())
        })
        .collect()
}

// ---------------------------------------------------------------- internals

/// The output lattice of a release: `spacing = Gamma = C 2^(shift - 32)`,
/// `steps = sigma C / Gamma` (noise std in grid units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OutputGrid {
    pub(crate) shift: u32,
    pub(crate) steps: f64,
    pub(crate) spacing: f64,
}

impl OutputGrid {
    /// Requires validated `clip_norm` and `sigma`.
    pub(crate) fn new(clip_norm: f64, sigma: f64) -> Self {
        // noise std in fine-grid (gamma) units, divided by OUT_STEPS; < 2^48 since sigma <= 2^20
        let t = sigma * (1u64 << FRAC_BITS) as f64 / OUT_STEPS;
        let shift = if t >= 1.0 { (t as u64).ilog2() } else { 0 };
        let steps = sigma * pow2(FRAC_BITS as i32 - shift as i32);
        let spacing = clip_norm * pow2(shift as i32 - FRAC_BITS as i32);
        OutputGrid { shift, steps, spacing }
    }

    /// `Gamma * (A + round(b + steps Z))` per coordinate of the exact sum
    /// `T = A 2^shift + B`, with `round(b + steps Z)` drawn exactly
    /// ([`rounded_gaussian`]: Karney's exact normal, exact rounding).
    pub(crate) fn add_noise<R: Rng + ?Sized>(&self, sum: &[i128], rng: &mut R) -> Vec<f64> {
        let unit: i128 = 1 << self.shift;
        sum.iter()
            .map(|&t| {
                let a = t.div_euclid(unit);
                let b = t.rem_euclid(unit) as u64; // < 2^shift <= 2^48
                let k = rounded_gaussian(b, self.shift, self.steps, rng) as i128;
                (a + k) as f64 * self.spacing
            })
            .collect()
    }
}

/// 2^e as f64 (|e| < 1000).
fn pow2(e: i32) -> f64 {
    2f64.powi(e)
}

/// Exact fixed-point sum `T = sum_{i in sample} r_i` (units of `gamma = C 2^-32`)
/// and how many of the used rows were clipped: the tests' reference.
#[cfg(test)]
pub(crate) fn fixed_point_sum(
    rows: &[f32],
    dim: usize,
    clip_norm: f64,
    sample: &[usize],
) -> Result<(Vec<i128>, usize)> {
    let mut sum = vec![0i128; dim];
    let mut buf = vec![0.0f64; dim];
    let mut ints = vec![0i64; dim];
    let mut clipped = 0;
    for &i in sample {
        let row = &rows[i * dim..(i + 1) * dim];
        clipped += clip_row(row, clip_norm, &mut buf, i)? as usize;
        quantise_row(&buf, clip_norm, &mut ints);
        for (s, &v) in sum.iter_mut().zip(&ints) {
            *s += v as i128;
        }
    }
    Ok((sum, clipped))
}

fn validate(rows: &[f32], dim: usize, clip_norm: f64, sigma: f64, sample_rate: f64) -> Result<()> {
    check_shape(rows, dim)?;
    check_clip_norm(clip_norm)?;
    check_sigma(sigma)?;
    if !(sample_rate > 0.0 && sample_rate <= 1.0) {
        return Err(EpsvecError::Privacy(format!("sample_rate must be in (0, 1], got {sample_rate}")));
    }
    // Every row, sampled or not, before any randomness is drawn.
    if let Some(pos) = rows.iter().position(|x| !x.is_finite()) {
        return Err(EpsvecError::InvalidInput(format!(
            "row {} has a non-finite value ({}) at column {}; non-finite records are \
             rejected, never dropped silently",
            pos / dim,
            rows[pos],
            pos % dim
        )));
    }
    Ok(())
}

pub(crate) fn check_shape(rows: &[f32], dim: usize) -> Result<()> {
    if dim == 0 {
        return Err(EpsvecError::InvalidInput("dim must be > 0, got 0".into()));
    }
    if rows.len() % dim != 0 {
        return Err(EpsvecError::InvalidInput(format!(
            "rows has {} values, not a multiple of dim = {dim}",
            rows.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_sigma(sigma: f64) -> Result<()> {
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(EpsvecError::Privacy(format!("noise multiplier sigma must be finite and > 0, got {sigma}")));
    }
    if !(SIGMA_MIN..=SIGMA_MAX).contains(&sigma) {
        return Err(EpsvecError::Privacy(format!(
            "noise multiplier sigma = {sigma} is outside the supported range [{SIGMA_MIN:e}, {SIGMA_MAX}]"
        )));
    }
    Ok(())
}

pub(crate) fn check_clip_norm(clip_norm: f64) -> Result<()> {
    let (lo, hi) = CLIP_NORM_RANGE;
    if !(clip_norm.is_finite() && clip_norm > 0.0) {
        return Err(EpsvecError::Privacy(format!("clip_norm must be finite and > 0, got {clip_norm}")));
    }
    if !(lo..=hi).contains(&clip_norm) {
        return Err(EpsvecError::Privacy(format!(
            "clip_norm = {clip_norm} is outside the supported range [{lo:e}, {hi:e}]"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
