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
//! sample. The curator learns only *whether* that happened, and only when
//! every record is read ([`PrivateRelease::curator_counts`]): under sampling
//! it would tell whether the offending record was drawn.
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

/// The exact fixed-point sum of clipped terms, with no randomness: the part
/// of a release that a worker of a distributed run computes over its share
/// of the records (every record: no sampling) and sends, as
/// [`ClippedSum::to_bytes`], to the one [`PrivateRelease`] that merges the
/// shares exactly (integers: any order, any split, the same sum) and adds
/// the noise once. It is un-noised private data: it travels only between
/// the curator's own processes and is never published.
#[derive(Clone)]
pub struct ClippedSum {
    dim: usize,
    clip_norm: f64,
    sum: Vec<i128>,
    clipped_buf: Vec<f64>,
    ints: Vec<i64>,
    records: usize,
    clipped: usize,
    nonfinite: bool,
}

/// Leads every serialised [`ClippedSum`]: a name and a format version.
const SUM_MAGIC: &[u8; 8] = b"EPSVSUM1";
const SUM_HEADER: usize = 8 + 8 + 8 + 8 + 8 + 1;

impl ClippedSum {
    /// An empty sum of `dim` values clipped to `C`.
    pub fn new(dim: usize, clip_norm: f64) -> Result<Self> {
        check_params(dim, clip_norm, 1.0)?;
        Ok(ClippedSum {
            dim,
            clip_norm,
            sum: vec![0; dim],
            clipped_buf: vec![0.0; dim],
            ints: vec![0; dim],
            records: 0,
            clipped: 0,
            nonfinite: false,
        })
    }

    /// Adds one record's term: clipped to `C`, quantised, summed exactly; a
    /// non-finite term counts as zero (see the module docs).
    pub fn add(&mut self, row: &[f32]) -> Result<()> {
        self.records += 1;
        if row.iter().any(|x| !x.is_finite()) {
            self.nonfinite = true;
            return Ok(());
        }
        self.clipped += clip_row(row, self.clip_norm, &mut self.clipped_buf, 0)? as usize;
        quantise_row(&self.clipped_buf, self.clip_norm, &mut self.ints);
        for (s, &v) in self.sum.iter_mut().zip(&self.ints) {
            *s += v as i128;
        }
        Ok(())
    }

    /// Adds `rows` (`n x dim`), one record each.
    pub fn add_rows(&mut self, rows: &[f32]) -> Result<()> {
        crate::privacy::mechanism::check_shape(rows, self.dim)?;
        rows.chunks_exact(self.dim).try_for_each(|row| self.add(row))
    }

    /// Adds another share of the same release (same dimension and clip norm).
    pub fn merge(&mut self, other: &ClippedSum) -> Result<()> {
        if other.dim != self.dim || other.clip_norm.to_bits() != self.clip_norm.to_bits() {
            return Err(EpsvecError::InvalidInput(format!(
                "a partial sum of {} values clipped to {} cannot join a release of {} values clipped to {}",
                other.dim, other.clip_norm, self.dim, self.clip_norm
            )));
        }
        // Checked, and all or nothing: only corrupt shares can overflow 128 bits.
        self.sum = (self.sum.iter().zip(&other.sum).map(|(&s, &o)| s.checked_add(o)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| EpsvecError::InvalidInput("partial sums overflow: not shares of one release".into()))?;
        self.records += other.records;
        self.clipped += other.clipped;
        self.nonfinite |= other.nonfinite;
        Ok(())
    }

    /// How many values each term has.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The share as bytes (little-endian), for the wire between workers and the release.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SUM_HEADER + 16 * self.dim);
        out.extend_from_slice(SUM_MAGIC);
        for v in [self.dim as u64, self.clip_norm.to_bits(), self.records as u64, self.clipped as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(self.nonfinite as u8);
        self.sum.iter().for_each(|s| out.extend_from_slice(&s.to_le_bytes()));
        out
    }

    /// A share back from [`ClippedSum::to_bytes`]; anything else is a clear error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| EpsvecError::InvalidInput(format!("not an epsvec partial sum: {why}"));
        if bytes.len() < SUM_HEADER || &bytes[..8] != SUM_MAGIC {
            return Err(bad("wrong header"));
        }
        let word = |i: usize| u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().expect("8 bytes"));
        let dim = usize::try_from(word(0)).map_err(|_| bad("dimension too large"))?;
        if bytes.len() as u128 != SUM_HEADER as u128 + 16 * dim as u128 || bytes[SUM_HEADER - 1] > 1 {
            return Err(bad("wrong length"));
        }
        let mut out = ClippedSum::new(dim, f64::from_bits(word(1)))?;
        out.records = word(2) as usize;
        out.clipped = word(3) as usize;
        if out.clipped > out.records {
            return Err(bad("more records clipped than summed"));
        }
        out.nonfinite = bytes[SUM_HEADER - 1] == 1;
        for (s, chunk) in out.sum.iter_mut().zip(bytes[SUM_HEADER..].chunks_exact(16)) {
            *s = i128::from_le_bytes(chunk.try_into().expect("16 bytes"));
        }
        Ok(out)
    }
}

/// Exact counts of a release in progress, for the curator's own diagnostics
/// only: never released, logged or printed by default. Under Poisson
/// sampling only what does not depend on the coins is given: `clipped` and
/// `nonfinite` exist for the drawn records only and would reveal the sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CuratorCounts {
    /// Records offered to the release (`|D|`, drawn or not).
    pub records: usize,
    /// Records whose term was clipped (`None` under sampling).
    pub clipped: Option<usize>,
    /// Whether some record's term was non-finite and counted as zero (`None` under sampling).
    pub nonfinite: Option<bool>,
}

/// A release in progress: records go in, one or more noisy sums come out.
pub struct PrivateRelease<R: Rng = ChaCha20Rng> {
    sample_rate: f64,
    seeded: bool,
    rng: R,
    sum: ClippedSum,
    records_in: usize,
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
        let sum = ClippedSum::new(dim, clip_norm).expect("parameters checked by the caller");
        PrivateRelease { sample_rate, seeded, rng, sum, records_in: 0 }
    }

    /// Offers `n` more records: draws each one's Poisson coin and calls `read`
    /// with the indices (in `0..n`, increasing) of those drawn, which returns
    /// their terms (`len * dim` values, row-major). The indices never leave.
    pub fn offer(&mut self, n: usize, read: impl FnOnce(&[usize]) -> Result<Vec<f32>>) -> Result<()> {
        let drawn = poisson_sample(n, self.sample_rate, &mut self.rng);
        self.records_in += n;
        if drawn.is_empty() {
            return Ok(());
        }
        let rows = read(&drawn)?;
        if rows.len() != drawn.len() * self.sum.dim {
            return Err(EpsvecError::InvalidInput(format!(
                "{} values for {} records of dimension {}",
                rows.len(),
                drawn.len(),
                self.sum.dim
            )));
        }
        self.sum.add_rows(&rows)
    }

    /// Offers records whose terms are already computed (`rows`, `n x dim`).
    pub fn offer_rows(&mut self, rows: &[f32]) -> Result<()> {
        crate::privacy::mechanism::check_shape(rows, self.sum.dim)?;
        let dim = self.sum.dim;
        self.offer(rows.len() / dim, |drawn| {
            Ok(drawn.iter().flat_map(|&i| rows[i * dim..(i + 1) * dim].to_vec()).collect())
        })
    }

    /// Merges a worker's share, which read every record of its part: only a
    /// release over every record (rate 1) takes shares, since a share holds
    /// no Poisson coins.
    pub fn merge(&mut self, share: &ClippedSum) -> Result<()> {
        if self.sample_rate < 1.0 {
            return Err(EpsvecError::Privacy(
                "a Poisson-sampled release cannot take partial sums: the coins are drawn inside the release".into(),
            ));
        }
        self.sum.merge(share)?;
        self.records_in += share.records;
        Ok(())
    }

    /// What the curator may see of this release (see [`CuratorCounts`]).
    pub fn curator_counts(&self) -> CuratorCounts {
        let every = self.sample_rate >= 1.0;
        CuratorCounts {
            records: self.records_in,
            clipped: every.then_some(self.sum.clipped),
            nonfinite: every.then_some(self.sum.nonfinite),
        }
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
            let grid = OutputGrid::new(self.sum.clip_norm, sigma);
            let noisy = grid.add_noise(&self.sum.sum, &mut self.rng);
            out.push(Release {
                noisy,
                report: ReleaseReport {
                    noise_std: sigma * self.sum.clip_norm,
                    grid: grid.spacing,
                    sigma,
                    clip_norm: self.sum.clip_norm,
                    sample_rate: self.sample_rate,
                    dim: self.sum.dim,
                    seeded: self.seeded,
                },
                private: PrivateCounts {
                    records_in: self.records_in,
                    records_used: self.sum.records,
                    clipped: self.sum.clipped,
                },
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
        assert_eq!(rel.curator_counts(), CuratorCounts { records: 5, clipped: Some(0), nonfinite: Some(true) });
        assert_eq!(rel.finish(&[1.0]).unwrap()[0].noisy, clean[0].noisy);
    }

    #[test]
    fn under_sampling_the_curator_sees_nothing_the_coins_decide() {
        let mut r = rows(5, 2);
        r[0] = f32::NAN;
        for seed in 0..20 {
            let mut rel = PrivateRelease::with_rng(2, 1.0, 0.3, true, ChaCha20Rng::seed_from_u64(seed));
            rel.offer_rows(&r).unwrap();
            assert_eq!(rel.curator_counts(), CuratorCounts { records: 5, clipped: None, nonfinite: None });
        }
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

    #[test]
    fn partial_sums_merged_in_any_split_equal_the_in_process_release() {
        let r = rows(30, 4);
        let whole = {
            let mut rel = PrivateRelease::new(4, 5.0, 1.0, &NoiseSource::Seeded(9)).unwrap();
            rel.offer_rows(&r).unwrap();
            rel.finish(&[1.5]).unwrap()
        };
        for split in [1, 7, 30] {
            let mut rel = PrivateRelease::new(4, 5.0, 1.0, &NoiseSource::Seeded(9)).unwrap();
            // Shares in reverse order, each through the wire format.
            for piece in r.chunks(4 * split).rev() {
                let mut share = ClippedSum::new(4, 5.0).unwrap();
                share.add_rows(piece).unwrap();
                rel.merge(&ClippedSum::from_bytes(&share.to_bytes()).unwrap()).unwrap();
            }
            let got = rel.finish(&[1.5]).unwrap();
            assert_eq!(got[0].noisy, whole[0].noisy, "split {split}");
            assert_eq!(got[0].private.records_in, 30);
            assert_eq!(got[0].private.clipped, whole[0].private.clipped);
        }
    }

    #[test]
    fn partial_sums_refuse_what_does_not_fit() {
        let share = ClippedSum::new(4, 5.0).unwrap();
        let mut sampled = PrivateRelease::new(4, 5.0, 0.5, &NoiseSource::Seeded(0)).unwrap();
        assert!(sampled.merge(&share).is_err(), "a share carries no Poisson coins");
        let mut other = PrivateRelease::new(4, 2.0, 1.0, &NoiseSource::Seeded(0)).unwrap();
        assert!(other.merge(&share).is_err(), "another clip norm");
        let mut wider = PrivateRelease::new(5, 5.0, 1.0, &NoiseSource::Seeded(0)).unwrap();
        assert!(wider.merge(&share).is_err(), "another dimension");
        let bytes = share.to_bytes();
        for bad in [&bytes[..bytes.len() - 1], &bytes[1..], b"EPSVSUM1".as_slice(), &[]] {
            assert!(ClippedSum::from_bytes(bad).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[8 + 8 * 4] = 2; // the non-finite flag must be 0 or 1
        assert!(ClippedSum::from_bytes(&flipped).is_err());
        let mut clipped = bytes.clone();
        clipped[8 + 8 * 3] = 1; // one record clipped of none summed
        assert!(ClippedSum::from_bytes(&clipped).is_err());
        let mut huge = ClippedSum::new(4, 5.0).unwrap();
        huge.sum[0] = i128::MAX;
        let mut total = ClippedSum::new(4, 5.0).unwrap();
        total.sum[0] = 1;
        assert!(total.merge(&huge).is_err() && total.sum[0] == 1, "an overflow changes nothing");
    }
}
