//! Joint L2 clipping of per-record rows, and their exact fixed-point form.
//!
//! The mechanism sums records on the fixed-point grid `gamma = C 2^-FRAC_BITS`
//! (integers, exact, order-independent), and the sensitivity bound it relies
//! on, `||r||_2 <= 2^FRAC_BITS` for every record's integer vector `r`, is
//! checked in exact integer arithmetic, not trusted to floating point.

use crate::error::{EpsvecError, Result};

/// Fractional bits of the fixed-point grid: `gamma = C * 2^-FRAC_BITS`.
pub const FRAC_BITS: u32 = 32;

/// `2^FRAC_BITS` as f64.
const SCALE: f64 = (1u64 << FRAC_BITS) as f64;

/// Clips one row into `out` (same length): `out = row * min(1, C / ||row||)`,
/// computed in f64. Returns whether the row was scaled (`||row|| > C`).
///
/// Guarantees: rows with `||row|| <= C` are copied exactly (f32 -> f64 is exact);
/// a scaled row has a computed f64 norm `<= C` (a last shrink by a few ulps
/// absorbs the rounding of the division), parallel to `row`.
/// Errors (`InvalidInput`) on NaN or infinite entries. `row_index` only
/// labels the message.
pub fn clip_row(row: &[f32], clip_norm: f64, out: &mut [f64], row_index: usize) -> Result<bool> {
    debug_assert_eq!(row.len(), out.len());
    let mut ss = 0.0f64;
    for (j, &x) in row.iter().enumerate() {
        if !x.is_finite() {
            return Err(EpsvecError::InvalidInput(format!(
                "row {row_index} has a non-finite value ({x}) at column {j}; \
                 non-finite records are rejected, never dropped silently"
            )));
        }
        let x = x as f64;
        ss += x * x; // f32 values: no overflow or harmful underflow in f64
    }
    let norm = ss.sqrt();
    if norm <= clip_norm {
        for (o, &x) in out.iter_mut().zip(row) {
            *o = x as f64;
        }
        return Ok(false);
    }
    let mut scale = clip_norm / norm;
    loop {
        let mut ss2 = 0.0;
        for (o, &x) in out.iter_mut().zip(row) {
            *o = x as f64 * scale;
            ss2 += *o * *o;
        }
        if ss2.sqrt() <= clip_norm {
            return Ok(true);
        }
        scale *= 1.0 - 4.0 * f64::EPSILON;
    }
}

/// Clips every row of `rows` (`n x dim`, row-major) jointly in L2 to norm
/// `<= clip_norm` ([`clip_row`]); returns the clipped rows (f64, `n x dim`) and
/// how many rows were scaled. The input is not modified.
pub fn clip_rows(rows: &[f32], dim: usize, clip_norm: f64) -> Result<(Vec<f64>, usize)> {
    crate::privacy::mechanism::check_shape(rows, dim)?;
    crate::privacy::mechanism::check_clip_norm(clip_norm)?;
    let mut out = vec![0.0; rows.len()];
    let mut clipped = 0;
    for (i, (r, o)) in rows.chunks_exact(dim).zip(out.chunks_exact_mut(dim)).enumerate() {
        clipped += clip_row(r, clip_norm, o, i)? as usize;
    }
    Ok((out, clipped))
}

/// The fixed-point form of a clipped row `c` (`||c|| <= C`): each coordinate
/// `c_j / gamma` truncated toward zero (which never increases `|c_j|`, hence
/// never the norm), then checked exactly: `sum r_j^2 <= 4^FRAC_BITS`. Should
/// the f64 products have rounded up enough to break it (not observed), the
/// largest `|r_j|` are moved toward zero one unit at a time until it holds.
/// So `||gamma r||_2 <= C` holds exactly, whatever the floating point did.
pub fn quantise_row(clipped: &[f64], clip_norm: f64, out: &mut [i64]) {
    let factor = SCALE / clip_norm; // finite: clip_norm is in [1e-100, 1e100]
    let mut ss: u128 = 0;
    for (o, &c) in out.iter_mut().zip(clipped) {
        let v = (c * factor).trunc();
        // |v| <= 2^32 (1 + tiny): fits i64 exactly.
        *o = v as i64;
        ss += (*o as i128 * *o as i128) as u128;
    }
    let limit: u128 = 1u128 << (2 * FRAC_BITS);
    while ss > limit {
        let (k, _) = out.iter().enumerate().max_by_key(|(_, v)| v.unsigned_abs()).expect("non-empty row");
        let a = out[k].unsigned_abs() as u128;
        ss -= 2 * a - 1; // a^2 - (a-1)^2
        out[k] -= out[k].signum();
    }
}

/// Exact squared norm of an integer row, in grid units squared.
pub fn int_norm_sq(r: &[i64]) -> u128 {
    r.iter().map(|&v| (v as i128 * v as i128) as u128).sum()
}

/// `2^FRAC_BITS`, the largest allowed norm of a record's integer vector.
pub fn int_clip() -> u128 {
    1u128 << FRAC_BITS
}
