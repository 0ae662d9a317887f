//! CPU float32 matrix products in plain Rust, for decoding's row counts,
//! against a weight held `[in, out]` row-major (`Kernel::Transposed`).
//!
//! - One row (`vector_times`): memory-bound, so each thread takes one
//!   contiguous block of the weight's rows and streams it; the threads'
//!   partial sums are added in a fixed order. AVX-512 or AVX2+FMA when the
//!   CPU has them.
//! - 2-64 rows (AVX-512 only): 8 rows x 48 columns of sums held in
//!   registers while 16 weight rows at a time stream past (few enough
//!   streams for the prefetchers), each thread owning a range of columns.
//!   On the AMD EPYC build machine a decoding step's products at 16 rows
//!   took ~40 ms here against 59 ms in libtorch's `mm` (MKL).
//!
//! `times` serves the plain-Rust decoding step, `few_rows` the libtorch
//! path's linears (`kernels::apply`).
//!
//! Both run on libtorch's own OpenMP team (`parallel`): a second pool of
//! threads would compete for the cores with libtorch's, which spin a while
//! after each of its ops (on 2 cores that cost a batch of 16 a quarter of
//! its speed).

use std::any::Any;
#[cfg(libgomp)]
use std::ffi::{c_int, c_uint, c_void};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use crate::error::Result;

// libtorch's OpenMP runtime, linked by build.rs when libtorch ships it.
#[cfg(libgomp)]
extern "C" {
    fn GOMP_parallel(run: unsafe extern "C" fn(*mut c_void), data: *mut c_void, threads: c_uint, flags: c_uint);
    fn omp_get_thread_num() -> c_int;
    fn omp_get_num_threads() -> c_int;
}

struct Job<'a> {
    work: &'a (dyn Fn(usize, usize) + Sync),
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// Runs `work(thread, threads)` on each thread of libtorch's OpenMP team (as
/// many as `tch::get_num_threads()`); a panic in any resumes on the caller.
/// Without libgomp at build time, runs `work(0, 1)` on the caller.
pub fn parallel(work: &(dyn Fn(usize, usize) + Sync)) {
    let job = Job { work, panic: Mutex::new(None) };
    #[cfg(libgomp)]
    {
        unsafe extern "C" fn run(data: *mut c_void) {
            // SAFETY: `data` is the `Job` below, alive until `GOMP_parallel` returns.
            let job = unsafe { &*(data as *const Job) };
            let (thread, threads) = unsafe { (omp_get_thread_num() as usize, omp_get_num_threads() as usize) };
            job.run(thread, threads);
        }
        let threads = tch::get_num_threads().max(1) as c_uint;
        // SAFETY: `run` only reads `job`, which outlives the call (it returns after every thread finished).
        unsafe { GOMP_parallel(run, &job as *const Job as *mut c_void, threads, 0) };
    }
    #[cfg(not(libgomp))]
    job.run(0, 1);
    if let Some(panic) = job.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
        resume_unwind(panic);
    }
}

impl Job<'_> {
    fn run(&self, thread: usize, threads: usize) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (self.work)(thread, threads))) {
            self.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(panic);
        }
    }
}

/// A pointer the threads write disjoint parts through.
pub struct Shared(pub *mut f32);

// SAFETY: users write disjoint elements from each thread.
unsafe impl Sync for Shared {}

impl Shared {
    pub fn get(&self) -> *mut f32 {
        self.0
    }
}

/// `y = x · w` for one row `x` and `w` `[x.len(), y.len()]`: each thread
/// sums one contiguous block of `w`'s rows into its part of `partials`
/// (scratch space), and the parts are added in order.
pub fn vector_times(x: &[f32], w: &[f32], y: &mut [f32], partials: &mut Vec<f32>) {
    let (in_dim, out) = (x.len(), y.len());
    let threads = tch::get_num_threads().max(1) as usize;
    let block = in_dim.div_ceil(threads).next_multiple_of(4);
    let blocks = in_dim.div_ceil(block);
    partials.clear();
    partials.resize(blocks * out, 0.0);
    let parts = Shared(partials.as_mut_ptr());
    parallel(&|t, team| {
        for b in (t..blocks).step_by(team) {
            let rows = b * block..((b + 1) * block).min(in_dim);
            // SAFETY: block `b`'s part of `partials`, written by this thread only.
            let part = unsafe { std::slice::from_raw_parts_mut(parts.get().add(b * out), out) };
            add_rows(&x[rows.clone()], &w[rows.start * out..rows.end * out], part);
        }
    });
    let mut parts = partials.chunks_exact(out);
    y.copy_from_slice(parts.next().expect("at least one block"));
    for part in parts {
        for (y, &p) in y.iter_mut().zip(part) {
            *y += p;
        }
    }
}

/// Columns per pass over the rows: the partial sums stay in L1.
const TILE: usize = 2048;

/// `y += x · w` for `w` `[x.len(), y.len()]` row-major, four rows at a time.
#[inline(always)]
fn add_rows_with<const FMA: bool>(x: &[f32], w: &[f32], y: &mut [f32]) {
    let out = y.len();
    let fma = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    for start in (0..out).step_by(TILE) {
        let end = (start + TILE).min(out);
        let y = &mut y[start..end];
        let row = |r: usize| &w[r * out + start..r * out + end];
        let quads = x.len() / 4 * 4;
        for r in (0..quads).step_by(4) {
            let (x0, x1, x2, x3) = (x[r], x[r + 1], x[r + 2], x[r + 3]);
            let rows = row(r).iter().zip(row(r + 1)).zip(row(r + 2)).zip(row(r + 3));
            for (y, (((&w0, &w1), &w2), &w3)) in y.iter_mut().zip(rows) {
                *y = fma(w3, x3, fma(w2, x2, fma(w1, x1, fma(w0, x0, *y))));
            }
        }
        for (r, &xr) in x.iter().enumerate().skip(quads) {
            for (y, &w) in y.iter_mut().zip(row(r)) {
                *y = fma(w, xr, *y);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn add_rows_avx512(x: &[f32], w: &[f32], y: &mut [f32]) {
    add_rows_with::<true>(x, w, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_rows_avx2(x: &[f32], w: &[f32], y: &mut [f32]) {
    add_rows_with::<true>(x, w, y)
}

fn add_rows(x: &[f32], w: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { add_rows_avx512(x, w, y) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { add_rows_avx2(x, w, y) };
        }
    }
    add_rows_with::<false>(x, w, y)
}

/// Most rows the few-row kernel takes: decoding batches (longer inputs,
/// such as prompts, go to libtorch).
pub const MAX_ROWS: usize = 64;
/// Rows per register block.
const MR: usize = 8;
/// Columns per register block (three 16-float vectors).
const NR: usize = 48;
/// Weight rows streamed per pass.
const KC: usize = 16;

/// `y = x · w` for `x` `[rows, in]`, `w` `[in, out]`, `y` `[rows, out]`:
/// `vector_times` for one row, else the few-row kernel (AVX-512, rows
/// padded to a multiple of 8 in `scratch`).
pub fn times(x: &[f32], rows: usize, w: &[f32], y: &mut [f32], scratch: &mut Vec<f32>) {
    if rows == 1 {
        return vector_times(x, w, y, scratch);
    }
    let padded = rows.next_multiple_of(MR);
    if padded == rows {
        return rows_times(x, rows, w, y);
    }
    let (in_dim, out) = (x.len() / rows, y.len() / rows);
    scratch.clear();
    scratch.resize(padded * (in_dim + out), 0.0);
    let (xp, yp) = scratch.split_at_mut(padded * in_dim);
    xp[..x.len()].copy_from_slice(x);
    rows_times(xp, padded, w, yp);
    y.copy_from_slice(&yp[..y.len()]);
}

/// `rows` `[n, in]` times `weight` `[in, out]` plus `bias` by `times`, when
/// this CPU and shape suit the few-row kernel (AVX-512, 2..=64 float32
/// rows); `None` otherwise.
pub fn few_rows(rows: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Option<Tensor>> {
    let n = rows.size()[0] as usize;
    let cpu_f32 = |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float;
    if !has_avx512() || !(2..=MAX_ROWS).contains(&n) || !cpu_f32(rows) || !cpu_f32(weight) || !weight.is_contiguous() {
        return Ok(None);
    }
    let x = rows.f_contiguous()?;
    let mut y = Tensor::f_empty([n as i64, weight.size()[1]], (Kind::Float, Device::Cpu))?;
    // SAFETY: contiguous float32 CPU tensors (`y` fresh), `numel` elements each.
    let (xs, ws, ys) = unsafe {
        (
            std::slice::from_raw_parts(x.data_ptr() as *const f32, x.numel()),
            std::slice::from_raw_parts(weight.data_ptr() as *const f32, weight.numel()),
            std::slice::from_raw_parts_mut(y.data_ptr() as *mut f32, y.numel()),
        )
    };
    times(xs, n, ws, ys, &mut Vec::new());
    if let Some(b) = bias {
        y = y.f_add_(b)?;
    }
    Ok(Some(y))
}

/// Whether the few-row kernel runs on this CPU.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `y = x · w` for `x` `[rows, in]` (`rows` a multiple of 8), `w` `[in, out]`
/// and `y` `[rows, out]`; each thread owns a
/// range of 48-column blocks. Needs AVX-512.
#[allow(unused_variables)]
fn rows_times(x: &[f32], rows: usize, w: &[f32], y: &mut [f32]) {
    let (in_dim, out) = (x.len() / rows, y.len() / rows);
    assert!(rows.is_multiple_of(MR) && w.len() == in_dim * out && has_avx512());
    #[cfg(target_arch = "x86_64")]
    {
        let blocks = out.div_ceil(NR);
        let y = Shared(y.as_mut_ptr());
        parallel(&|t, threads| {
            let per = blocks.div_ceil(threads);
            for r0 in (0..in_dim).step_by(KC) {
                let r1 = (r0 + KC).min(in_dim);
                for block in t * per..((t + 1) * per).min(blocks) {
                    let c = block * NR;
                    for g in (0..rows).step_by(MR) {
                        // SAFETY: AVX-512 checked; rows g..g+8 of x and y, columns c..c+48 (masked at
                        // `out`) and weight rows r0..r1 are in bounds; threads write disjoint columns.
                        unsafe {
                            panel(
                                x.as_ptr().add(g * in_dim + r0),
                                in_dim,
                                w.as_ptr().add(r0 * out + c),
                                out,
                                r1 - r0,
                                (out - c).min(NR),
                                y.get().add(g * out + c),
                                r0 == 0,
                            )
                        }
                    }
                }
            }
        });
    }
}

/// For 8 rows: `y[b, ..width] = (0 if first else y[b, ..width]) + Σ_r
/// x[b * in_dim + r] · w[r * out + ..width]` over `r < k`, `width <= 48`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn panel(
    x: *const f32,
    in_dim: usize,
    w: *const f32,
    out: usize,
    k: usize,
    width: usize,
    y: *mut f32,
    first: bool,
) {
    use std::arch::x86_64::*;
    let mask = |v: usize| -> __mmask16 {
        let left = width.saturating_sub(16 * v).min(16);
        ((1u32 << left) - 1) as __mmask16
    };
    let masks = [mask(0), mask(1), mask(2)];
    let mut acc = [[_mm512_setzero_ps(); 3]; MR];
    if !first {
        for (b, acc) in acc.iter_mut().enumerate() {
            for v in 0..3 {
                acc[v] = _mm512_maskz_loadu_ps(masks[v], y.add(b * out + 16 * v));
            }
        }
    }
    for r in 0..k {
        let row = w.add(r * out);
        let wv = [0, 1, 2].map(|v| _mm512_maskz_loadu_ps(masks[v], row.add(16 * v)));
        for (b, acc) in acc.iter_mut().enumerate() {
            let xb = _mm512_set1_ps(*x.add(b * in_dim + r));
            for v in 0..3 {
                acc[v] = _mm512_fmadd_ps(xb, wv[v], acc[v]);
            }
        }
    }
    for (b, acc) in acc.iter().enumerate() {
        for v in 0..3 {
            _mm512_mask_storeu_ps(y.add(b * out + 16 * v), masks[v], acc[v]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &Tensor, w: &Tensor) -> Tensor {
        x.to_kind(Kind::Double).mm(&w.to_kind(Kind::Double)).to_kind(Kind::Float)
    }

    #[test]
    fn few_rows_match_a_float64_product_at_ragged_shapes() {
        let opts = (Kind::Float, Device::Cpu);
        // Rows off the 8-row blocks, columns off the 48-column blocks and the
        // 16-float vectors, inputs off the 16-row passes.
        for (n, i, o) in [(2, 7, 1), (9, 33, 47), (16, 576, 100), (64, 40, 577), (3, 1, 49)] {
            let (x, w, b) = (Tensor::randn([n, i], opts), Tensor::randn([i, o], opts), Tensor::randn([o], opts));
            let Some(got) = few_rows(&x, &w, Some(&b)).unwrap() else {
                assert!(!has_avx512(), "AVX-512 present, yet {n}x{i}x{o} fell back");
                return;
            };
            let err = (got - reference(&x, &w) - &b).abs().max().double_value(&[]);
            assert!(err < 1e-4, "{n}x{i}x{o}: {err}");
        }
        let (one, many) = (Tensor::randn([1, 8], opts), Tensor::randn([65, 8], opts));
        let w = Tensor::randn([8, 8], opts);
        assert!(few_rows(&one, &w, None).unwrap().is_none() && few_rows(&many, &w, None).unwrap().is_none());
    }

    #[test]
    fn parallel_runs_every_thread_and_returns_their_panics() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (ran, team) = (AtomicUsize::new(0), AtomicUsize::new(0));
        parallel(&|_, threads| {
            ran.fetch_add(1, Ordering::SeqCst);
            team.store(threads, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), team.load(Ordering::SeqCst));
        let caught = catch_unwind(|| parallel(&|t, _| assert!(t != 0, "thread zero fails"))).unwrap_err();
        assert_eq!(caught.downcast_ref::<&str>(), Some(&"thread zero fails"));
    }

    #[test]
    fn vector_times_matches_a_float64_product() {
        let opts = (Kind::Float, Device::Cpu);
        for (i, o) in [(1, 5), (7, 3000), (576, 49)] {
            let (x, w) = (Tensor::randn([1, i], opts), Tensor::randn([i, o], opts));
            let (xs, ws) =
                (Vec::<f32>::try_from(x.reshape([-1])).unwrap(), Vec::<f32>::try_from(w.reshape([-1])).unwrap());
            let mut y = vec![0.0; o as usize];
            vector_times(&xs, &ws, &mut y, &mut Vec::new());
            let err = (Tensor::from_slice(&y) - reference(&x, &w).reshape([-1])).abs().max().double_value(&[]);
            assert!(err < 1e-4, "{i}x{o}: {err}");
        }
    }
}
