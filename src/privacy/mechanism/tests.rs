//! Tests of the Gaussian mechanism: clipping, noise distribution, sampling,
//! and an empirical privacy audit (Clopper–Pearson lower bound on eps).

use super::*;
use crate::privacy::accounting::{gaussian_sigma, Adjacency};
use crate::privacy::clip::{int_clip, int_norm_sq};
use crate::privacy::noise::{bernoulli_exact, standard_normal_pair};
use rand::rngs::ChaCha20Rng;
use rand::{Rng, SeedableRng};

// ------------------------------------------------------------------ helpers

fn phi(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// DKW–Massart: P(sup |F_n - F| > t) <= 2 exp(-2 n t^2) = p.
fn dkw(n: usize, p: f64) -> f64 {
    ((2.0 / p).ln() / (2.0 * n as f64)).sqrt()
}

/// Kolmogorov–Smirnov distance of the sample `xs` (sorted in place) to `cdf`.
fn ks(xs: &mut [f64], cdf: impl Fn(f64) -> f64) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = xs.len() as f64;
    let mut d: f64 = 0.0;
    for (i, &x) in xs.iter().enumerate() {
        let f = cdf(x);
        d = d.max((i as f64 + 1.0) / n - f).max(f - i as f64 / n);
    }
    d
}

fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, v)
}

fn norm(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (norm(a) * norm(b))
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn std_normal_f32(r: &mut ChaCha20Rng) -> f32 {
    standard_normal_pair(r).0 as f32
}

/// Regularised incomplete beta I_x(a, b) (continued fraction, modified Lentz).
fn betai(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = libm::lgamma(a + b) - libm::lgamma(a) - libm::lgamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * betacf(x, a, b) / a
    } else {
        1.0 - ln_front.exp() * betacf(1.0 - x, b, a) / b
    }
}

fn betacf(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..100_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            return h;
        }
    }
    panic!("betacf did not converge (x = {x}, a = {a}, b = {b})");
}

/// P(Binomial(n, p) <= k).
fn binom_cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n {
        1.0
    } else {
        betai(1.0 - p, (n - k) as f64, k as f64 + 1.0)
    }
}

/// One-sided Clopper–Pearson upper confidence bound on p at level 1 - alpha:
/// the p with P(Bin(n, p) <= k) = alpha (bisection, rounded up, then raised by a
/// relative 1e-9 to cover the ~1e-11 relative error of `betai` at n ~ 2e5).
fn cp_upper(k: u64, n: u64, alpha: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if binom_cdf(k, n, mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-15 * hi {
            break;
        }
    }
    (hi * (1.0 + 1e-9)).min(1.0)
}

/// Lower confidence bound on eps from threshold tests on the 1-D outputs `y0`
/// (dataset without the record) and `y1` (with it): for every threshold t in
/// `ts`, both events {y > t} and {y <= t}; (eps, delta)-DP implies
/// `P1(y > t) <= e^eps P0(y > t) + delta` and `P0(y <= t) <= e^eps P1(y <= t) + delta`.
/// Bonferroni over all 2 |ts| Clopper–Pearson bounds: the returned bound is
/// valid (eps_lb <= true eps) with probability >= 1 - alpha.
fn eps_lower_bound(y0: &mut [f64], y1: &mut [f64], ts: &[f64], delta: f64, alpha: f64) -> (f64, f64) {
    y0.sort_by(|a, b| a.partial_cmp(b).unwrap());
    y1.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (n0, n1) = (y0.len() as u64, y1.len() as u64);
    let level = alpha / (2.0 * ts.len() as f64);
    let mut best = (f64::NEG_INFINITY, f64::NAN);
    for &t in ts {
        let fp = y0.iter().filter(|&&y| y > t).count() as u64; // guess "present" though absent
        let fnn = y1.partition_point(|&y| y <= t) as u64; // guess "absent" though present
        let fpr_up = cp_upper(fp, n0, level);
        let fnr_up = cp_upper(fnn, n1, level);
        for e in [((1.0 - delta - fnr_up) / fpr_up).ln(), ((1.0 - delta - fpr_up) / fnr_up).ln()] {
            if e > best.0 {
                best = (e, t);
            }
        }
    }
    best
}

// ------------------------------------------------------------------ helpers' own checks

#[test]
fn clopper_pearson_matches_closed_forms() {
    // k = 0: (1 - p)^n = alpha.
    for (n, a) in [(200_000u64, 1e-8f64), (50, 0.05)] {
        let want = 1.0 - a.powf(1.0 / n as f64);
        let got = cp_upper(0, n, a);
        assert!(got >= want && got <= want * (1.0 + 2e-9), "n = {n}: {got} vs {want}");
    }
    // small n: direct summation of the binomial pmf.
    let (n, k) = (40u64, 7u64);
    let p = cp_upper(k, n, 0.01);
    let mut cdf = 0.0;
    for i in 0..=k {
        let ln_c = libm::lgamma(n as f64 + 1.0) - libm::lgamma(i as f64 + 1.0) - libm::lgamma((n - i) as f64 + 1.0);
        cdf += (ln_c + i as f64 * p.ln() + (n - i) as f64 * (1.0 - p).ln()).exp();
    }
    assert!(cdf <= 0.01 && cdf > 0.01 * (1.0 - 1e-6), "cdf at the bound = {cdf}");
    // large k (the continued fraction near the mean).
    let p = cp_upper(100_000, 200_000, 1e-6);
    assert!(p > 0.5 && p < 0.51, "{p}");
    let at = binom_cdf(100_000, 200_000, p);
    assert!(at <= 1e-6 && at > 0.99e-6, "{at}");
}

#[test]
fn accountant_copy_gives_the_reference_sigmas() {
    let s1 = gaussian_sigma(1.0, 1e-5, 1.0, Adjacency::AddRemove).unwrap();
    let s49 = gaussian_sigma(4.9, 1e-5, 1.0, Adjacency::AddRemove).unwrap();
    assert!((s1 / 3.7306316348192556 - 1.0).abs() < 1e-11, "{s1}");
    assert!((s49 / 0.9074473073194292 - 1.0).abs() < 1e-11, "{s49}");
}

// ------------------------------------------------------------------ clipping

#[test]
fn clipping_bounds_norms_keeps_inputs_and_inner_rows() {
    let mut r = rng(1);
    let c = 1.7;
    for &dim in &[1usize, 3, 64, 1000] {
        let n = 300;
        let mut rows = Vec::with_capacity(n * dim);
        for i in 0..n {
            // norms from 1e-20 to 1e20 (log-uniform), plus special rows
            let scale = 10f64.powf(-20.0 + 40.0 * (r.next_u64() >> 11) as f64 / 2f64.powi(53));
            for j in 0..dim {
                let v = match i {
                    0 => 0.0, // zero row
                    1 => {
                        if j == 0 {
                            3.0e38
                        } else {
                            0.0
                        }
                    } // huge one-hot (f32 max range)
                    2 => (c / (dim as f64).sqrt()) as f32 as f64, // ~on the sphere
                    3 => {
                        if j == 0 {
                            c
                        } else {
                            0.0
                        }
                    } // exactly C (1.7 as f32 > 1.7? either way)
                    4 => 1e-30,
                    _ => std_normal_f32(&mut r) as f64 * scale / (dim as f64).sqrt(),
                };
                rows.push(v as f32);
            }
        }
        let before = rows.clone();
        let (out, clipped) = clip_rows(&rows, dim, c).unwrap();
        assert_eq!(rows, before, "input modified");
        let mut count = 0;
        let mut ints = vec![0i64; dim];
        for (x, y) in rows.chunks_exact(dim).zip(out.chunks_exact(dim)) {
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let nx = norm(&x64);
            let ny = norm(y);
            assert!(ny <= c, "dim {dim}: clipped norm {ny:e} > C = {c}");
            if nx <= c {
                assert_eq!(y, &x64[..], "a row inside the ball changed");
            } else {
                count += 1;
                assert!(ny >= c * (1.0 - 1e-12), "clipped norm {ny} well below C");
                assert!(cosine(&x64, y) > 1.0 - 1e-12, "direction changed");
            }
            // exact fixed-point bound and precision
            quantise_row(y, c, &mut ints);
            assert!(int_norm_sq(&ints) <= int_clip() * int_clip(), "integer norm above 2^32");
            let gamma = c / 2f64.powi(32);
            for (&q, &v) in ints.iter().zip(y) {
                let back = q as f64 * gamma;
                assert!(back.abs() <= v.abs() && (v - back).abs() < gamma * (1.0 + 1e-9));
            }
        }
        assert_eq!(count, clipped);
    }
}

#[test]
fn quantisation_repairs_rounding_above_the_bound() {
    // A row given with norm slightly above C (as a floating-point clip could
    // produce): the exact integer check must bring it back to <= 2^32.
    let c = 1.0;
    let dim = 7;
    let y: Vec<f64> = (0..dim).map(|_| (1.0 + 1e-9) / (dim as f64).sqrt()).collect();
    let mut ints = vec![0i64; dim];
    quantise_row(&y, c, &mut ints);
    assert!(int_norm_sq(&ints) <= int_clip() * int_clip());
    assert!(int_norm_sq(&ints) > (int_clip() - 8) * (int_clip() - 8));
}

#[test]
fn nonfinite_rows_are_errors_even_when_not_sampled() {
    let dim = 4;
    let mut rows = vec![0.5f32; 50 * dim];
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        rows[49 * dim + 2] = bad;
        for q in [1.0, 1e-9] {
            match release_noisy_sum(&rows, dim, 1.0, 1.0, q, &NoiseSource::Seeded(3)) {
                Err(EpsvecError::InvalidInput(m)) => {
                    assert!(m.contains("row 49") && m.contains("non-finite"), "{m}")
                }
                other => panic!("expected InvalidInput, got {other:?}"),
            }
        }
        assert!(matches!(clip_rows(&rows, dim, 1.0), Err(EpsvecError::InvalidInput(_))));
    }
}

#[test]
fn invalid_parameters_are_errors_quoting_the_value() {
    let rows = vec![0.1f32; 12];
    let s = NoiseSource::Seeded(0);
    let privacy = |r: Result<Release>, needle: &str| match r {
        Err(EpsvecError::Privacy(m)) => assert!(m.contains(needle), "{m} lacks {needle}"),
        other => panic!("expected Privacy error, got {other:?}"),
    };
    let invalid = |r: Result<Release>, needle: &str| match r {
        Err(EpsvecError::InvalidInput(m)) => assert!(m.contains(needle), "{m} lacks {needle}"),
        other => panic!("expected InvalidInput error, got {other:?}"),
    };
    for c in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-200] {
        privacy(release_noisy_sum(&rows, 3, c, 1.0, 1.0, &s), &format!("{c}"));
    }
    for sg in [0.0, -2.5, f64::NAN, f64::INFINITY, 3e6] {
        privacy(release_noisy_sum(&rows, 3, 1.0, sg, 1.0, &s), &format!("{sg}"));
    }
    for q in [0.0, -0.1, 1.5, f64::NAN] {
        privacy(release_noisy_sum(&rows, 3, 1.0, 1.0, q, &s), &format!("{q}"));
    }
    invalid(release_noisy_sum(&rows, 0, 1.0, 1.0, 1.0, &s), "dim");
    invalid(release_noisy_sum(&rows, 5, 1.0, 1.0, 1.0, &s), "12");
    // n = 0 is fine: pure noise
    let r = release_noisy_sum(&[], 3, 1.0, 1.0, 1.0, &s).unwrap();
    assert_eq!(r.noisy.len(), 3);
    assert_eq!(r.private.records_in, 0);
}

// ------------------------------------------------------------------ noise

/// Random rows: a shared mean direction plus noise, a fifth of them huge.
fn random_rows(n: usize, dim: usize, c: f64, r: &mut ChaCha20Rng) -> Vec<f32> {
    let mean: Vec<f32> = (0..dim).map(|_| std_normal_f32(r)).collect();
    let mut rows = Vec::with_capacity(n * dim);
    for i in 0..n {
        let big = if i % 5 == 0 { 100.0 } else { 0.3 };
        let s = (c * big / (dim as f64).sqrt()) as f32;
        for m in &mean {
            rows.push(s * (m + 0.5 * std_normal_f32(r)));
        }
    }
    rows
}

#[test]
fn released_noise_has_std_sigma_c() {
    let (n, dim, c, sigma) = (20, 100_000, 1.5, 0.8);
    let rows = random_rows(n, dim, c, &mut rng(21));
    let rel = release_noisy_sum(&rows, dim, c, sigma, 1.0, &NoiseSource::Seeded(22)).unwrap();
    assert_eq!(rel.report.noise_std, sigma * c);
    assert!(rel.report.seeded);
    // 1. the exact distribution (the rounded Gaussian on the output grid), by the
    //    randomised probability integral transform: exactly U(0,1) under the null.
    let all: Vec<usize> = (0..n).collect();
    let (sum, _) = fixed_point_sum(&rows, dim, c, &all).unwrap();
    let grid = OutputGrid::new(c, sigma);
    assert_eq!(grid.spacing, rel.report.grid);
    assert!(grid.steps >= 16.0 && grid.steps < 32.0, "{}", grid.steps);
    let unit = 1i128 << grid.shift;
    let mut dither = rng(23);
    let mut u: Vec<f64> = sum
        .iter()
        .zip(&rel.noisy)
        .map(|(&t, &y)| {
            let a = t.div_euclid(unit);
            let b = t.rem_euclid(unit) as f64 / unit as f64;
            let k = ((y / grid.spacing).round() as i128 - a) as f64;
            let lo = phi((k - 0.5 - b) / grid.steps);
            let hi = phi((k + 0.5 - b) / grid.steps);
            lo + (dither.next_u64() >> 11) as f64 / 2f64.powi(53) * (hi - lo)
        })
        .collect();
    let d_pit = ks(&mut u, |x| x.clamp(0.0, 1.0));
    let thr = dkw(dim, 1e-6);
    // 2. (noisy - exact clipped sum) / (sigma C) against N(0, 1): moments, and KS
    //    with an allowance for the output grid (one cell holds at most 0.4/steps of mass).
    let (clipped, _) = clip_rows(&rows, dim, c).unwrap();
    let mut exact = vec![0.0; dim];
    for row in clipped.chunks_exact(dim) {
        for (e, v) in exact.iter_mut().zip(row) {
            *e += v;
        }
    }
    let mut z: Vec<f64> = rel.noisy.iter().zip(&exact).map(|(y, e)| (y - e) / (sigma * c)).collect();
    let (m, v) = mean_var(&z);
    let d_norm = ks(&mut z, phi);
    let allowance = 0.4 / grid.steps;
    eprintln!(
        "release noise: PIT KS D = {d_pit:.5} (thr {thr:.5}); standardised residual KS D = \
         {d_norm:.5} (thr {:.5}), mean {m:.5}, var {v:.5}; steps {}",
        thr + allowance,
        grid.steps
    );
    assert!(d_pit < thr);
    assert!(d_norm < thr + allowance);
    assert!(m.abs() < 5.3 / (dim as f64).sqrt(), "mean {m}");
    let var_expected = 1.0 + 1.0 / (12.0 * grid.steps * grid.steps);
    assert!((v - var_expected).abs() < 5.3 * (2.0 / dim as f64).sqrt(), "var {v}");
}

#[test]
fn output_lies_on_a_data_independent_lattice() {
    let (dim, c, sigma) = (64, 2.0, 1.3);
    let mut r = rng(31);
    let a = random_rows(10, dim, c, &mut r);
    let mut b = a.clone();
    b[0] += 1e-6; // sums differing in their low-order bits only
    let ra = release_noisy_sum(&a, dim, c, sigma, 1.0, &NoiseSource::Seeded(1)).unwrap();
    let rb = release_noisy_sum(&b, dim, c, sigma, 1.0, &NoiseSource::Seeded(2)).unwrap();
    assert_eq!(ra.report.grid, rb.report.grid);
    assert!(ra.report.grid <= sigma * c / 16.0 && ra.report.grid > sigma * c / 32.0);
    for y in ra.noisy.iter().chain(&rb.noisy) {
        let k = y / ra.report.grid;
        assert!((k - k.round()).abs() < 1e-9 * k.abs().max(1.0), "{y} is off the lattice");
    }
}

#[test]
fn tiny_sigma_recovers_the_clipped_mean_direction() {
    let (n, layers, width, c) = (200, 4, 64, 1.0);
    let dim = layers * width;
    let rows = random_rows(n, dim, c, &mut rng(41));
    let (clipped, nclip) = clip_rows(&rows, dim, c).unwrap();
    assert!(nclip > 0 && nclip < n);
    let mut exact = vec![0.0; dim];
    for row in clipped.chunks_exact(dim) {
        for (e, v) in exact.iter_mut().zip(row) {
            *e += v;
        }
    }
    let rel = release_noisy_sum(&rows, dim, c, 1e-6, 1.0, &NoiseSource::Seeded(42)).unwrap();
    let cos = cosine(&rel.noisy, &exact);
    assert!(cos > 0.999, "cosine {cos}");
    assert_eq!(rel.private, PrivateCounts { records_in: n, records_used: n, clipped: nclip });
    let unit = normalise_layers(&rel.noisy, layers).unwrap();
    assert_eq!(unit.len(), layers);
    for (l, v) in unit.iter().enumerate() {
        let v64: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        assert!((norm(&v64) - 1.0).abs() < 1e-6);
        let cos = cosine(&v64, &exact[l * width..(l + 1) * width]);
        assert!(cos > 0.999, "layer {l}: cosine {cos}");
    }
    eprintln!("tiny sigma: cosine with the exact clipped sum = {cos:.12}");
}

#[test]
fn normalise_layers_rejects_bad_shapes_and_zero_layers() {
    assert!(matches!(normalise_layers(&[1.0; 10], 3), Err(EpsvecError::InvalidInput(_))));
    assert!(matches!(normalise_layers(&[1.0; 10], 0), Err(EpsvecError::InvalidInput(_))));
    assert!(matches!(normalise_layers(&[], 1), Err(EpsvecError::InvalidInput(_))));
    match normalise_layers(&[1.0, 2.0, 0.0, 0.0, 3.0, 4.0], 3) {
        Err(EpsvecError::InvalidInput(m)) => assert!(m.contains("layer 1"), "{m}"),
        other => panic!("{other:?}"),
    }
    let v = normalise_layers(&[3.0, 4.0, 0.0, -2.0], 2).unwrap();
    assert_eq!(v, vec![vec![0.6f32, 0.8], vec![0.0, -1.0]]);
}

// ------------------------------------------------------------------ sampling and sources

#[test]
fn poisson_sampling_keeps_each_record_with_probability_q() {
    let n = 1_000_000;
    for (i, &q) in [0.3, 0.5, 0.75, 0.01, 2f64.powi(-7), 3e-5, 0.999].iter().enumerate() {
        let k = poisson_sample(n, q, &mut rng(50 + i as u64)).len() as f64;
        let mean = n as f64 * q;
        let sd = (mean * (1.0 - q)).sqrt();
        assert!((k - mean).abs() < 5.3 * sd, "q = {q}: kept {k}, expected {mean} +- {sd}");
    }
    assert_eq!(poisson_sample(1000, 1.0, &mut rng(0)).len(), 1000);
    // far below 2^-64: exercises the leading-zero words
    let mut r = rng(60);
    assert!((0..100_000).all(|_| !bernoulli_exact(2f64.powi(-100), &mut r)));
    assert!((0..1000).all(|_| bernoulli_exact(1.0, &mut r)));
    // reproducible per seed, different across seeds
    let a = poisson_sample(1000, 0.5, &mut rng(7));
    assert_eq!(a, poisson_sample(1000, 0.5, &mut rng(7)));
    assert_ne!(a, poisson_sample(1000, 0.5, &mut rng(8)));
}

#[test]
fn sampled_release_reports_the_sample_size_privately() {
    let (n, dim) = (10_000, 3);
    let rows = vec![0.1f32; n * dim];
    let q = 0.2;
    let r = release_noisy_sum(&rows, dim, 1.0, 1.0, q, &NoiseSource::Seeded(5)).unwrap();
    let used = r.private.records_used as f64;
    assert!((used - 2000.0).abs() < 5.3 * (2000.0f64 * 0.8).sqrt());
    assert_eq!(r.private.records_in, n);
    assert_eq!(r.report.sample_rate, q);
    // the noisy sum tracks the sampled sum, not the full one: 0.1 * |S| per coordinate
    for y in &r.noisy {
        assert!((y - 0.1 * used).abs() < 6.0);
    }
}

#[test]
fn os_source_differs_between_calls_and_seeded_is_reproducible() {
    let rows = vec![0.25f32; 40];
    let a = release_noisy_sum(&rows, 4, 1.0, 1.0, 0.5, &NoiseSource::Os).unwrap();
    let b = release_noisy_sum(&rows, 4, 1.0, 1.0, 0.5, &NoiseSource::Os).unwrap();
    assert!(!a.report.seeded && !b.report.seeded);
    assert_ne!(a.noisy, b.noisy);
    let c = release_noisy_sum(&rows, 4, 1.0, 1.0, 0.5, &NoiseSource::Seeded(9)).unwrap();
    let d = release_noisy_sum(&rows, 4, 1.0, 1.0, 0.5, &NoiseSource::Seeded(9)).unwrap();
    let e = release_noisy_sum(&rows, 4, 1.0, 1.0, 0.5, &NoiseSource::Seeded(10)).unwrap();
    assert!(c.report.seeded);
    assert_eq!(c.noisy, d.noisy);
    assert_eq!(c.private, d.private);
    assert_ne!(c.noisy, e.noisy);
}

// ------------------------------------------------------------------ privacy audit

const AUDIT_RELEASES: usize = 200_000;
const AUDIT_DELTA: f64 = 1e-5;
/// Total false-failure probability of a soundness check (Bonferroni over all thresholds).
const AUDIT_ALPHA: f64 = 1e-6;
const AUDIT_THRESHOLDS: usize = 121;

/// The audit of one configuration: `D` = `base` (1-D records), `D'` = `base` + one
/// record of norm 1e6 C (clipped to C, pointing along +1: the projection on its
/// direction is the release itself). `AUDIT_RELEASES` releases of each, through
/// the real code path: at q = 1 the clipped fixed-point sum is computed once and
/// only the noise is redrawn; at q < 1 the whole release (sampling included) is
/// redone. Returns (eps_lb, best threshold in units of C).
fn audit(base: &[f32], c: f64, sigma: f64, q: f64, seed: u64) -> (f64, f64) {
    let mut with = base.to_vec();
    with.push((1e6 * c) as f32);
    let mut r = rng(seed);
    let mut run = |rows: &[f32]| -> Vec<f64> {
        if q >= 1.0 {
            let all: Vec<usize> = (0..rows.len()).collect();
            let (sum, _) = fixed_point_sum(rows, 1, c, &all).unwrap();
            let grid = OutputGrid::new(c, sigma);
            (0..AUDIT_RELEASES).map(|_| grid.add_noise(&sum, &mut r)[0]).collect()
        } else {
            (0..AUDIT_RELEASES)
                .map(|_| release_with_rng(rows, 1, c, sigma, q, true, &mut r).unwrap().noisy[0])
                .collect()
        }
    };
    let mut y0 = run(base);
    let mut y1 = run(&with);
    // Thresholds fixed in advance from public quantities: the base sum +- 6 noise stds.
    let s0: f64 = base.iter().map(|&x| (x as f64).clamp(-c, c)).sum();
    let (lo, hi) = (s0 - 6.0 * sigma * c, s0 + c + 6.0 * sigma * c);
    let ts: Vec<f64> =
        (0..AUDIT_THRESHOLDS).map(|i| lo + (hi - lo) * i as f64 / (AUDIT_THRESHOLDS - 1) as f64).collect();
    let (e, t) = eps_lower_bound(&mut y0, &mut y1, &ts, AUDIT_DELTA, AUDIT_ALPHA);
    (e, (t - s0) / c)
}

fn audit_config(eps: f64, q: f64, base: &[f32], c: f64, seed: u64) {
    let sigma = gaussian_sigma(eps, AUDIT_DELTA, q, Adjacency::AddRemove).unwrap();
    let (lb, t) = audit(base, c, sigma, q, seed);
    eprintln!("audit eps = {eps}, q = {q}: sigma = {sigma:.6}, eps_lb = {lb:.3} (threshold {t:.2} C)");
    assert!(lb <= eps, "eps_lb {lb} exceeds the claimed eps {eps} (sigma {sigma}, q {q})");
    // Power: the same audit with a quarter of the noise must catch the violation.
    let (lb_weak, t) = audit(base, c, sigma / 4.0, q, seed + 1);
    eprintln!("audit eps = {eps}, q = {q}: sigma/4 -> eps_lb = {lb_weak:.3} (threshold {t:.2} C)");
    assert!(lb_weak > eps, "underpowered audit: eps_lb {lb_weak} <= {eps} at sigma/4");
}

#[test]
fn audit_q1_eps1() {
    audit_config(1.0, 1.0, &[0.3, -0.7, 0.1, 2.0], 1.0, 100);
}

#[test]
fn audit_q1_eps4() {
    audit_config(4.0, 1.0, &[0.3, -0.7, 0.1, 2.0], 1.0, 200);
}

#[test]
fn audit_q01_eps1() {
    // Worst case for subsampling (accountant docs): the other records are zero.
    audit_config(1.0, 0.1, &[0.0; 3], 1.0, 300);
}

#[test]
fn audit_q01_eps4() {
    audit_config(4.0, 0.1, &[0.0; 3], 1.0, 400);
}

#[test]
fn output_grid_stays_in_the_exact_samplers_range_at_the_extreme_sigmas() {
    for sigma in [SIGMA_MIN, 1e-9, 2f64.powi(-28), 0.3, 1.0, SIGMA_MAX] {
        let grid = OutputGrid::new(1.0, sigma);
        assert!(grid.shift <= 48 && (1.0..=2f64.powi(40)).contains(&grid.steps), "sigma {sigma}: {grid:?}");
        assert_eq!(grid.steps * grid.spacing, sigma, "steps * Gamma = sigma C exactly");
        let rel = release_noisy_sum(&[0.5, -0.25], 2, 1.0, sigma, 1.0, &NoiseSource::Seeded(1)).unwrap();
        assert!(rel.noisy.iter().all(|x| x.is_finite()));
    }
    assert!(release_noisy_sum(&[0.5, -0.25], 2, 1.0, SIGMA_MIN / 2.0, 1.0, &NoiseSource::Seeded(1)).is_err());
}
