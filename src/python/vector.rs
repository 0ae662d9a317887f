//! Vector files and the release mechanism; documented in `epsvec.vector`.

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;

use pyo3::types::PyDict;

use super::errors::run;
use crate::privacy::mechanism;
use crate::privacy::noise::{self, NoiseSource};
use crate::vector_file;

#[pyfunction]
pub fn save_vector(
    py: Python<'_>,
    path: PathBuf,
    directions: PyReadonlyArray2<'_, f32>,
    metadata: String,
) -> PyResult<()> {
    let shape = directions.as_array().shape().to_vec();
    let values: Vec<f32> = directions.as_array().iter().copied().collect();
    run(py, || vector_file::save(&path, &values, shape[0], shape[1], &metadata))
}

#[pyfunction]
pub fn load_vector<'py>(py: Python<'py>, path: PathBuf) -> PyResult<(Bound<'py, PyArray2<f32>>, String)> {
    let (values, layers, hidden, metadata) = run(py, || vector_file::load(&path))?;
    let array = ndarray::Array2::from_shape_vec((layers, hidden), values).expect("shape checked on load");
    Ok((array.into_pyarray(py), metadata))
}

fn source(seed: Option<u64>, stream: u64) -> NoiseSource {
    // Sampling and noise take separate streams of a test seed.
    seed.map_or(NoiseSource::Os, |s| NoiseSource::Seeded(s.wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))))
}

/// Indices of a Poisson sample (each of `n` records kept with probability
/// `rate`), drawn from the OS-seeded CSPRNG (or a test seed).
#[pyfunction]
#[pyo3(signature = (n, rate, seed = None))]
pub fn poisson_sample(py: Python<'_>, n: usize, rate: f64, seed: Option<u64>) -> PyResult<Vec<usize>> {
    run(py, || {
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(crate::EpsvecError::Privacy(format!("sample_rate must be in (0, 1], got {rate}")));
        }
        let mut rng = source(seed, 1).rng()?;
        Ok(noise::poisson_sample(n, rate, &mut rng))
    })
}

/// The Gaussian mechanism on already-sampled rows `[n, n_layers * hidden]`:
/// clip, exact sum, noise of std `sigma * clip_norm`, then one unit vector
/// per layer. Returns the directions `[n_layers, hidden]` and the public
/// report (never the private counts).
#[pyfunction]
#[pyo3(signature = (rows, n_layers, clip_norm, sigma, seed = None))]
pub fn release_vector<'py>(
    py: Python<'py>,
    rows: PyReadonlyArray2<'_, f32>,
    n_layers: usize,
    clip_norm: f64,
    sigma: f64,
    seed: Option<u64>,
) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyDict>)> {
    let dim = rows.as_array().shape()[1];
    let values: Vec<f32> = rows.as_array().iter().copied().collect();
    let (directions, report) = run(py, || {
        let release = mechanism::release_noisy_sum(&values, dim, clip_norm, sigma, 1.0, &source(seed, 2))?;
        Ok((mechanism::normalise_layers(&release.noisy, n_layers)?, release.report))
    })?;
    let hidden = dim / n_layers.max(1);
    let flat: Vec<f32> = directions.into_iter().flatten().collect();
    let array = ndarray::Array2::from_shape_vec((n_layers, hidden), flat).expect("normalise_layers checked the shape");
    let info = PyDict::new(py);
    info.set_item("noise_std", report.noise_std)?;
    info.set_item("grid", report.grid)?;
    info.set_item("seeded", report.seeded)?;
    info.set_item(
        "noise",
        "ChaCha20 CSPRNG seeded from the OS; exact fixed-point sum of the clipped rows; Gaussian draws \
         (Box-Muller, 53-bit uniforms) with the output snapped to a public lattice of spacing sigma*C/16..32",
    )?;
    Ok((array.into_pyarray(py), info))
}
