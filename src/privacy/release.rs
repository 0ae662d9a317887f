//! [`PrivateRelease`]: the one path by which anything derived from private
//! records leaves epsvec. It owns the secret randomness (one ChaCha20 stream
//! for the Poisson coins and the noise), the exact fixed-point sum of the
//! clipped per-record terms, and the noise; what comes out is the noisy sum
//! (or its per-layer unit vectors) and a report of public parameters. The
//! sample, its size and every per-record term stay inside.
//!
//! # The contract with the caller
//!
//! Each record's term `f(x_i)` (a row of `dim` values) must be a function of
//! that record and public data only: in epsvec, the pooled residual state of
//! the record's prompt, run alone (a batch of one, after a public prompt
//! prefix), minus the mean pooled state of the public negatives. Then under
//! add/remove adjacency the sum of clipped terms moves by at most `C` when one
//! record is added or removed (by `2C` under substitution), whatever the other
//! records are and wherever the record sits in the input: that is the
//! sensitivity the accountant assumes. A term that depended on other records
//! (pairing record `k` with negative `k mod M`, or batching records together
//! so rounding depends on the batch) would break it.
//!
//! Records are offered in order ([`PrivateRelease::offer`]); each gets a Poisson
//! coin, and only those drawn are read. A non-finite term contributes zero (a
//! fixed point of norm `<= C`, so still a function of that record alone):
//! failing instead would make whether a release happens depend on the secret
//! sample. The curator learns only *whether* that happened
//! ([`PrivateRelease::had_nonfinite`]), never through a released value.
//!
//! The mechanism itself (exact coins, clipping, exact sum, noise, output grid)
//! and its guarantee are documented in [`crate::privacy::mechanism`].

use rand::rngs::ChaCha20Rng;
use rand::Rng;

use crate::error::{EpsvecError, Result};
use crate::privacy::clip::{clip_row, quantise_row};
use crate::privacy::mechanism::{check_clip_norm, check_sigma, OutputGrid, PrivateCounts, Release, ReleaseReport};
use crate::privacy::noise::{poisson_sample, NoiseSource};

/// What a release computes, for reports (one place, beside the code).
pub fn describe(sample_rate: f64) -> String {
    let over = if sample_rate < 1.0 { "a Poisson sample of the records (exact coins)" } else { "every record" };
    format!(
        "Gaussian mechanism on the exact sum, over {over}, of per-record terms clipped jointly in L2 to C; each \
         term is a function of its record and public data only (a record's prompt runs alone); a non-finite term \
         counts as zero; per-layer normalisation is post-processing"
    )
}

/// A release in progress: records go in, one or more noisy sums come out.
pub struct PrivateRelease<R: Rng = ChaCha20Rng> {
    dim: usize,
    clip_norm: f64,
    sample_rate: f64,
    seeded: bool,
    rng: R,
    sum: Vec<i128>,
    clipped_buf: Vec<f64>,
    ints: Vec<i64>,
    counts: PrivateCounts,
    nonfinite: bool,
}

impl PrivateRelease<ChaCha20Rng> {
    /// A release of `dim` values with clip norm `C` and Poisson rate `q` in
    /// `(0, 1]`, its randomness from `source` (the OS unless a test seeds it).
    pub fn new(dim: usize, clip_norm: f64, sample_rate: f64, source: &NoiseSource) -> Result<Self> {
        check_params(dim, clip_norm, sample_rate)?;
        Ok(Self::with_rng(dim, clip_norm, sample_rate, source.is_seeded(), source.rng()?))
    }
}

impl<R: Rng> PrivateRelease<R> {
    /// As [`PrivateRelease::new`] on a caller's generator (the Rust audits reuse one stream);
    /// parameters must already be valid.
    pub(crate) fn with_rng(dim: usize, clip_norm: f64, sample_rate: f64, seeded: bool, rng: R) -> Self {
        PrivateRelease {
            dim,
            clip_norm,
            sample_rate,
            seeded,
            rng,
            sum: vec![0; dim],
            clipped_buf: vec![0.0; dim],
            ints: vec![0; dim],
            counts: PrivateCounts { records_in: 0, records_used: 0, clipped: 0 },
            nonfinite: false,
        }
    }

    /// Offers `n` more records: draws each one's Poisson coin and calls `read`
    /// with the indices (in `0..n`, increasing) of those drawn, which returns
    /// their terms (`len * dim` values, row-major). The indices never leave.
    pub fn offer(&mut self, n: usize, read: impl FnOnce(&[usize]) -> Result<Vec<f32>>) -> Result<()> {
        let drawn = poisson_sample(n, self.sample_rate, &mut self.rng);
        self.counts.records_in += n;
        if drawn.is_empty() {
            return Ok(());
        }
        let rows = read(&drawn)?;
        if rows.len() != drawn.len() * self.dim {
            return Err(EpsvecError::InvalidInput(format!(
                "{} values for {} records of dimension {}",
                rows.len(),
                drawn.len(),
                self.dim
            )));
        }
        for row in rows.chunks_exact(self.dim) {
            self.add(row)?;
        }
        Ok(())
    }

    /// Offers records whose terms are already computed (`rows`, `n x dim`).
    pub fn offer_rows(&mut self, rows: &[f32]) -> Result<()> {
        crate::privacy::mechanism::check_shape(rows, self.dim)?;
        let dim = self.dim;
        self.offer(rows.len() / dim, |drawn| {
            Ok(drawn.iter().flat_map(|&i| rows[i * dim..(i + 1) * dim].to_vec()).collect())
        })
    }

    fn add(&mut self, row: &[f32]) -> Result<()> {
        self.counts.records_used += 1;
        if row.iter().any(|x| !x.is_finite()) {
            self.nonfinite = true; // contributes zero
            return Ok(());
        }
        self.counts.clipped += clip_row(row, self.clip_norm, &mut self.clipped_buf, 0)? as usize;
        quantise_row(&self.clipped_buf, self.clip_norm, &mut self.ints);
        for (s, &v) in self.sum.iter_mut().zip(&self.ints) {
            *s += v as i128;
        }
        Ok(())
    }

    /// True when some drawn record's term was non-finite and counted as zero.
    /// For the curator's warning only; never publish.
    pub fn had_nonfinite(&self) -> bool {
        self.nonfinite
    }

    /// One noisy sum per noise multiplier in `sigmas` (units of `C`), each with
    /// its own independent noise from the same secret stream. Consumes the
    /// release: the exact sum is gone afterwards.
    pub fn finish(mut self, sigmas: &[f64]) -> Result<Vec<Release>> {
        for &sigma in sigmas {
            check_sigma(sigma)?;
        }
        let mut out = Vec::with_capacity(sigmas.len());
        for &sigma in sigmas {
            let grid = OutputGrid::new(self.clip_norm, sigma);
            let noisy = grid.add_noise(&self.sum, &mut self.rng);
            out.push(Release {
                noisy,
                report: ReleaseReport {
                    noise_std: sigma * self.clip_norm,
                    grid: grid.spacing,
                    sigma,
                    clip_norm: self.clip_norm,
                    sample_rate: self.sample_rate,
                    dim: self.dim,
                    seeded: self.seeded,
                },
                private: self.counts.clone(),
            });
        }
        Ok(out)
    }
}

fn check_params(dim: usize, clip_norm: f64, sample_rate: f64) -> Result<()> {
    if dim == 0 {
        return Err(EpsvecError::InvalidInput("dim must be > 0, got 0".into()));
    }
    check_clip_norm(clip_norm)?;
    if !(sample_rate > 0.0 && sample_rate <= 1.0) {
        return Err(EpsvecError::Privacy(format!("sample_rate must be in (0, 1], got {sample_rate}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rows(n: usize, dim: usize) -> Vec<f32> {
        (0..n * dim).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect()
    }

    #[test]
    fn offer_in_pieces_equals_offer_at_once() {
        let r = rows(40, 3);
        let whole = {
            let mut rel = PrivateRelease::new(3, 2.0, 0.5, &NoiseSource::Seeded(4)).unwrap();
            rel.offer_rows(&r).unwrap();
            rel.finish(&[1.0, 2.0]).unwrap()
        };
        let mut rel = PrivateRelease::new(3, 2.0, 0.5, &NoiseSource::Seeded(4)).unwrap();
        for piece in r.chunks(3 * 7) {
            rel.offer_rows(piece).unwrap();
        }
        let pieces = rel.finish(&[1.0, 2.0]).unwrap();
        assert_eq!(whole[0].noisy, pieces[0].noisy);
        assert_eq!(whole[1].noisy, pieces[1].noisy);
        assert_ne!(whole[0].noisy, whole[1].noisy, "each sigma draws its own noise");
        assert_eq!(whole[0].private.records_in, 40);
    }

    #[test]
    fn nonfinite_terms_count_as_zero() {
        let mut r = rows(5, 2);
        let clean = {
            let mut rel = PrivateRelease::with_rng(2, 100.0, 1.0, true, ChaCha20Rng::seed_from_u64(1));
            rel.offer_rows(&r[2..]).unwrap(); // records 1..5
            rel.finish(&[1.0]).unwrap()
        };
        r[0] = f32::NAN;
        let mut rel = PrivateRelease::with_rng(2, 100.0, 1.0, true, ChaCha20Rng::seed_from_u64(1));
        rel.offer_rows(&r).unwrap();
        assert!(rel.had_nonfinite());
        assert_eq!(rel.finish(&[1.0]).unwrap()[0].noisy, clean[0].noisy);
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(PrivateRelease::new(0, 1.0, 1.0, &NoiseSource::Seeded(0)).is_err());
        assert!(PrivateRelease::new(2, -1.0, 1.0, &NoiseSource::Seeded(0)).is_err());
        assert!(PrivateRelease::new(2, 1.0, 1.5, &NoiseSource::Seeded(0)).is_err());
        let rel = PrivateRelease::new(2, 1.0, 1.0, &NoiseSource::Seeded(0)).unwrap();
        assert!(rel.finish(&[f64::NAN]).is_err());
        let mut rel = PrivateRelease::new(2, 1.0, 1.0, &NoiseSource::Seeded(0)).unwrap();
        assert!(rel.offer(2, |_| Ok(vec![0.0; 3])).is_err());
    }
}
