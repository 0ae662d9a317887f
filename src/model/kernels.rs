//! Which matmul a CPU float32 linear uses. The fastest differs by CPU and
//! shape: on an Intel Xeon (2 cores) `x · Wᵀ` with `Wᵀ` stored `[in, out]`
//! beat oneDNN's prepacked GEMM 4-10x at decoding's 1-16 rows, while on an
//! AMD EPYC oneDNN beat the default linear 1.7x. So it is measured: once per
//! shape and machine, both kernels are timed at 1 and 16 rows and the faster
//! is kept. The choice is cached in `~/.cache/epsvec/linear-kernels.json`
//! under the CPU and thread count, so every later load on that machine
//! chooses the same (the kernels round differently, and a seeded run must
//! repeat). `EPSVEC_LINEAR_KERNEL=transposed|onednn` overrides it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::error::{EpsvecError, Result};
use crate::model::matmul;
use crate::model::placement::Placement;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `x.linear(W)` with `W` `[out, in]`: CUDA and half precision.
    Dense,
    /// `x · Wᵀ` (addmm) with `Wᵀ` stored `[in, out]`; 2-64 rows on
    /// AVX-512 CPUs by `matmul::few_rows`. The layout the plain-Rust
    /// decoding step reads.
    Transposed,
    /// oneDNN's GEMM on its own weight layout (activations converted around the call).
    Onednn,
}

const CPU_KERNELS: [Kernel; 2] = [Kernel::Transposed, Kernel::Onednn];
/// Decoding's row counts: one prompt, and a batch.
const TIMED_ROWS: [i64; 2] = [1, 16];
/// Shapes wider than this are timed on their first rows only (the per-row cost is what differs).
const MAX_TIMED_OUT: i64 = 8192;

impl Kernel {
    fn name(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Transposed => "transposed",
            Self::Onednn => "onednn",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        CPU_KERNELS.into_iter().find(|k| k.name() == name)
    }
}

/// `weight` `[out, in]` (and its bias) in the layout `kernel` multiplies with.
pub fn layout(kernel: Kernel, weight: Tensor, bias: Option<Tensor>) -> Result<(Tensor, Option<Tensor>)> {
    Ok(match kernel {
        Kernel::Dense => (weight, bias),
        Kernel::Transposed => (weight.f_transpose(0, 1)?.f_contiguous()?, bias),
        Kernel::Onednn => (weight.f_to_mkldnn(None)?, bias.map(|b| b.f_to_mkldnn(None)).transpose()?),
    })
}

/// `rows` `[n, in]` times a weight held by [`layout`], plus the bias: `[n, out]`.
pub fn apply(kernel: Kernel, rows: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    Ok(match kernel {
        Kernel::Dense => rows.f_linear(weight, bias)?,
        Kernel::Transposed => match (matmul::few_rows(rows, weight, bias)?, bias) {
            (Some(out), _) => out,
            (None, Some(b)) => b.f_addmm(rows, weight)?,
            (None, None) => rows.f_mm(weight)?,
        },
        Kernel::Onednn => {
            rows.f_contiguous()?.f_to_mkldnn(None)?.f_mkldnn_linear(weight, bias)?.f_to_dense(None, false)?
        }
    })
}

/// Choices made in this process: (machine, "in x out") -> kernel.
static CHOSEN: Mutex<BTreeMap<String, Kernel>> = Mutex::new(BTreeMap::new());

/// The kernel for a linear from `in_dim` to `out_dim` on `at`.
pub fn choose(at: Placement, in_dim: i64, out_dim: i64) -> Result<Kernel> {
    if at.device != Device::Cpu || at.kind != Kind::Float {
        return Ok(Kernel::Dense);
    }
    if let Ok(name) = std::env::var("EPSVEC_LINEAR_KERNEL") {
        return Kernel::from_name(&name).ok_or_else(|| {
            EpsvecError::InvalidInput(format!("EPSVEC_LINEAR_KERNEL must be transposed or onednn, got {name:?}"))
        });
    }
    let shape = format!("{in_dim}x{out_dim}");
    let mut chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
    if chosen.is_empty() {
        *chosen = read_cache();
    }
    if let Some(&kernel) = chosen.get(&shape) {
        return Ok(kernel);
    }
    let kernel = fastest(in_dim, out_dim)?;
    chosen.insert(shape, kernel);
    write_cache(&chosen);
    Ok(kernel)
}

/// Times each CPU kernel on a random weight of this shape at decoding's row counts.
fn fastest(in_dim: i64, out_dim: i64) -> Result<Kernel> {
    let weight = Tensor::f_randn([out_dim.min(MAX_TIMED_OUT), in_dim], (Kind::Float, Device::Cpu))?;
    let inputs: Vec<Tensor> = TIMED_ROWS
        .iter()
        .map(|&n| Tensor::f_randn([n, in_dim], (Kind::Float, Device::Cpu)))
        .collect::<std::result::Result<_, _>>()?;
    let mut best = (f64::INFINITY, CPU_KERNELS[0]);
    for kernel in CPU_KERNELS {
        let (w, _) = layout(kernel, weight.shallow_clone(), None)?;
        let mut seconds = 0.0;
        for x in &inputs {
            seconds += median_seconds(|| apply(kernel, x, &w, None).map(drop))?;
        }
        if seconds < best.0 {
            best = (seconds, kernel);
        }
    }
    Ok(best.1)
}

fn median_seconds(mut run: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..3 {
        run()?;
    }
    let mut times = Vec::with_capacity(9);
    for _ in 0..9 {
        let start = Instant::now();
        run()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The machine the choices hold for: CPU model and thread count.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{cpu}, {} threads", tch::get_num_threads())
}

fn cache_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("epsvec").join("linear-kernels.json"))
}

type CacheFile = BTreeMap<String, BTreeMap<String, String>>;

fn read_file() -> CacheFile {
    cache_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// This machine's cached choices; an unreadable or foreign cache is ignored.
fn read_cache() -> BTreeMap<String, Kernel> {
    let mut file = read_file();
    let mine = file.remove(&machine()).unwrap_or_default();
    mine.into_iter().filter_map(|(shape, name)| Kernel::from_name(&name).map(|k| (shape, k))).collect()
}

/// Best effort: without a writable cache the choice is still measured, once per process.
fn write_cache(chosen: &BTreeMap<String, Kernel>) {
    let Some(path) = cache_path() else { return };
    let mut file = read_file();
    file.insert(machine(), chosen.iter().map(|(s, k)| (s.clone(), k.name().to_string())).collect());
    let Ok(text) = serde_json::to_string_pretty(&file) else { return };
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let written = path.parent().is_some_and(|dir| std::fs::create_dir_all(dir).is_ok())
        && std::fs::write(&tmp, text).is_ok()
        && std::fs::rename(&tmp, &path).is_ok();
    if !written {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_computes_the_same_linear() {
        let (n, i, o) = (5, 24, 40);
        let opts = (Kind::Float, Device::Cpu);
        let (w, b, x) = (Tensor::randn([o, i], opts), Tensor::randn([o], opts), Tensor::randn([n, i], opts));
        let want = x.linear(&w, Some(&b));
        for kernel in [Kernel::Dense, Kernel::Transposed, Kernel::Onednn] {
            for bias in [Some(&b), None] {
                let (lw, lb) = layout(kernel, w.shallow_clone(), bias.map(Tensor::shallow_clone)).unwrap();
                let got = apply(kernel, &x, &lw, lb.as_ref()).unwrap();
                let want = if bias.is_some() { want.shallow_clone() } else { x.linear::<Tensor>(&w, None) };
                let err = (got - want).abs().max().double_value(&[]);
                assert!(err < 1e-5, "{kernel:?}, bias {}: {err}", bias.is_some());
            }
        }
    }

    #[test]
    fn kernel_names_round_trip() {
        for kernel in CPU_KERNELS {
            assert_eq!(Kernel::from_name(kernel.name()), Some(kernel));
        }
        assert_eq!(Kernel::from_name("dense"), None, "dense is for CUDA and half precision only");
    }
}
