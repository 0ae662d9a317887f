//! `epsvec._epsvec.PrivateRelease`: the private release, driven from Python
//! (`epsvec.extract`). Records go in; only noisy, normalised vectors and a
//! public report come out (see `crate::privacy::release`).

use std::sync::Mutex;

use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::engine::{parse_pool, PyEngine};
use super::errors::run;
use crate::engine::Engine;
use crate::error::EpsvecError;
use crate::privacy::accounting;
use crate::privacy::mechanism::{self, PrivateRelease, NOISE_DESCRIPTION};
use crate::privacy::noise::NoiseSource;
use crate::privacy::release::ClippedSum;

/// One release as Python sees it: unit vectors `[n_layers, hidden]` and the public report.
type Released<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyDict>);

#[pyclass(name = "PrivateRelease", module = "epsvec._epsvec")]
pub struct PyPrivateRelease {
    inner: Mutex<Option<PrivateRelease>>,
    n_layers: usize,
    hidden: usize,
}

impl PyPrivateRelease {
    fn with<T>(&self, work: impl FnOnce(&mut PrivateRelease) -> crate::Result<T>) -> crate::Result<T> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(release) => work(release),
            None => Err(EpsvecError::InvalidInput("this release is finished; start a new one".into())),
        }
    }
}

#[pymethods]
impl PyPrivateRelease {
    /// A release of `n_layers x hidden` values, clip norm `C`, Poisson rate
    /// `q`; noise from the OS unless `noise_seed` is given (tests only).
    #[new]
    #[pyo3(signature = (n_layers, hidden, clip_norm, sample_rate, noise_seed = None))]
    fn new(
        py: Python<'_>,
        n_layers: usize,
        hidden: usize,
        clip_norm: f64,
        sample_rate: f64,
        noise_seed: Option<u64>,
    ) -> PyResult<Self> {
        let source = noise_seed.map_or(NoiseSource::Os, NoiseSource::Seeded);
        let release = run(py, || PrivateRelease::new(n_layers * hidden, clip_norm, sample_rate, &source))?;
        Ok(Self { inner: Mutex::new(Some(release)), n_layers, hidden })
    }

    /// Offers records whose terms are computed already (`[n, n_layers * hidden]`).
    fn offer_rows(&self, py: Python<'_>, rows: PyReadonlyArray2<'_, f32>) -> PyResult<()> {
        let values: Vec<f32> = rows.as_array().iter().copied().collect();
        let width = rows.as_array().shape()[1];
        run(py, || {
            if width != self.n_layers * self.hidden {
                return Err(EpsvecError::InvalidInput(format!(
                    "rows have {width} columns, not {}",
                    self.n_layers * self.hidden
                )));
            }
            self.with(|r| r.offer_rows(&values))
        })
    }

    /// Offers records as prompts `prefix + tails[i]`: every prompt is checked,
    /// then each record's Poisson coin is drawn, and the drawn ones are run
    /// alone; a record's term is its pooled state at `layers` minus `baseline`.
    #[pyo3(signature = (engine, prefix, tails, layers, pool, baseline, weights = None))]
    #[allow(clippy::too_many_arguments)]
    fn offer_prompts(
        &self,
        py: Python<'_>,
        engine: PyRef<'_, PyEngine>,
        prefix: Vec<u32>,
        tails: Vec<Vec<u32>>,
        layers: Vec<i64>,
        pool: &str,
        baseline: PyReadonlyArray1<'_, f32>,
        weights: Option<Vec<Vec<f32>>>,
    ) -> PyResult<()> {
        let terms = RecordTerms::new(prefix, tails, layers, pool, baseline, weights);
        let engine = &*engine;
        run(py, || {
            let engine = engine.engine();
            let terms = terms.checked(&engine, self.n_layers, self.hidden)?;
            self.with(|release| release.offer(terms.tails.len(), |drawn| terms.compute(&engine, drawn)))
        })
    }

    /// Adds a worker's partial sum over every record of its part (releases
    /// over every record only: a partial sum carries no Poisson coins).
    fn merge(&self, py: Python<'_>, share: PyRef<'_, PyClippedSum>) -> PyResult<()> {
        let share = share.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        run(py, || self.with(|release| release.merge(&share)))
    }

    /// Exact counts for the curator's diagnostics only (never publish):
    /// `{"records", "clipped", "nonfinite"}`, the last two None under sampling.
    #[getter]
    fn curator_counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let counts = run(py, || self.with(|r| Ok(r.curator_counts())))?;
        let out = PyDict::new(py);
        out.set_item("records", counts.records)?;
        out.set_item("clipped", counts.clipped)?;
        out.set_item("nonfinite", counts.nonfinite)?;
        Ok(out)
    }

    /// One release per noise multiplier (own noise each): per-layer unit
    /// vectors `[n_layers, hidden]` (the noisy sums themselves with
    /// `normalise=False`, e.g. the counts of a histogram) and the public
    /// report. Ends the release.
    #[pyo3(signature = (sigmas, normalise = true))]
    fn finish<'py>(&self, py: Python<'py>, sigmas: Vec<f64>, normalise: bool) -> PyResult<Vec<Released<'py>>> {
        let (n_layers, hidden) = (self.n_layers, self.hidden);
        let releases = run(py, || {
            let release = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
            let release =
                release.ok_or_else(|| EpsvecError::InvalidInput("this release is finished already".into()))?;
            release
                .finish(&sigmas)?
                .into_iter()
                .map(|r| {
                    let values = if normalise {
                        mechanism::normalise_layers(&r.noisy, n_layers)?
                    } else {
                        r.noisy.chunks(hidden.max(1)).map(|layer| layer.iter().map(|&v| v as f32).collect()).collect()
                    };
                    Ok((values, r.report))
                })
                .collect::<crate::Result<Vec<_>>>()
        })?;
        let mut out = Vec::new();
        for (directions, report) in releases {
            let flat: Vec<f32> = directions.into_iter().flatten().collect();
            let array = ndarray::Array2::from_shape_vec((n_layers, self.hidden), flat).expect("normalised by layer");
            let info = PyDict::new(py);
            info.set_item("sigma", report.sigma)?;
            info.set_item("clip_norm", report.clip_norm)?;
            info.set_item("sample_rate", report.sample_rate)?;
            info.set_item("noise_std", report.noise_std)?;
            info.set_item("grid", report.grid)?;
            info.set_item("seeded", report.seeded)?;
            info.set_item("mechanism", crate::privacy::release::describe(report.sample_rate))?;
            info.set_item("noise", NOISE_DESCRIPTION)?;
            info.set_item("accountant", accounting::describe(report.sample_rate))?;
            out.push((array.into_pyarray(py), info));
        }
        Ok(out)
    }
}

/// A record's prompt pieces and how its term is made, checked against an
/// engine and a release before any record is run.
struct RecordTerms {
    prefix: Vec<u32>,
    tails: Vec<Vec<u32>>,
    layers: Vec<i64>,
    pool: String,
    baseline: Vec<f32>,
    weights: Option<Vec<Vec<f32>>>,
}

/// [`RecordTerms`] resolved for one engine.
struct CheckedTerms<'a> {
    terms: &'a RecordTerms,
    tails: Vec<&'a [u32]>,
    layers: Vec<usize>,
    pool: crate::hooks::Pool,
}

impl RecordTerms {
    fn new(
        prefix: Vec<u32>,
        tails: Vec<Vec<u32>>,
        layers: Vec<i64>,
        pool: &str,
        baseline: PyReadonlyArray1<'_, f32>,
        weights: Option<Vec<Vec<f32>>>,
    ) -> Self {
        let baseline = baseline.as_array().iter().copied().collect();
        RecordTerms { prefix, tails, layers, pool: pool.to_string(), baseline, weights }
    }

    /// Resolves layers and pool and checks every prompt and the shapes.
    fn checked(&self, engine: &Engine, n_layers: usize, hidden: usize) -> crate::Result<CheckedTerms<'_>> {
        let layers = engine.resolve_layers(Some(&self.layers))?;
        let pool = parse_pool(Some(&self.pool))?;
        let dim = layers.len() * engine.model.config.hidden_size as usize;
        if layers.len() != n_layers || dim != n_layers * hidden || self.baseline.len() != dim {
            return Err(EpsvecError::InvalidInput(format!(
                "layers, model width and baseline ({} values) do not match this release's {n_layers} x {hidden}",
                self.baseline.len()
            )));
        }
        let tails: Vec<&[u32]> = self.tails.iter().map(Vec::as_slice).collect();
        engine.check_prompts(&self.prefix, &tails, self.weights.as_deref())?;
        Ok(CheckedTerms { terms: self, tails, layers, pool })
    }
}

impl CheckedTerms<'_> {
    /// The terms of records `chosen`, each run alone: `[chosen, dim]` row-major.
    fn compute(&self, engine: &Engine, chosen: &[usize]) -> crate::Result<Vec<f32>> {
        let tails: Vec<&[u32]> = chosen.iter().map(|&i| self.tails[i]).collect();
        let weights: Option<Vec<Vec<f32>>> =
            self.terms.weights.as_ref().map(|w| chosen.iter().map(|&i| w[i].clone()).collect());
        let mut rows = engine.pooled_alone(&self.terms.prefix, &tails, weights.as_deref(), &self.layers, self.pool)?;
        for row in rows.chunks_exact_mut(self.terms.baseline.len()) {
            row.iter_mut().zip(&self.terms.baseline).for_each(|(x, b)| *x -= b);
        }
        Ok(rows)
    }
}

/// `epsvec._epsvec.ClippedSum`: a distributed worker's exact sum of clipped
/// terms over every record of its part, with no randomness; it travels as
/// bytes to the driver's [`PyPrivateRelease`], which merges the parts and
/// adds the noise once. Un-noised private data: never publish it.
#[pyclass(name = "ClippedSum", module = "epsvec._epsvec")]
pub struct PyClippedSum {
    inner: Mutex<ClippedSum>,
    n_layers: usize,
    hidden: usize,
}

#[pymethods]
impl PyClippedSum {
    #[new]
    fn new(py: Python<'_>, n_layers: usize, hidden: usize, clip_norm: f64) -> PyResult<Self> {
        let inner = run(py, || ClippedSum::new(n_layers * hidden, clip_norm))?;
        Ok(Self { inner: Mutex::new(inner), n_layers, hidden })
    }

    /// Adds every record `prefix + tails[i]`, each run alone, its term its
    /// pooled state at `layers` minus `baseline` (as in `PrivateRelease.offer_prompts`).
    #[pyo3(signature = (engine, prefix, tails, layers, pool, baseline, weights = None))]
    #[allow(clippy::too_many_arguments)]
    fn add_prompts(
        &self,
        py: Python<'_>,
        engine: PyRef<'_, PyEngine>,
        prefix: Vec<u32>,
        tails: Vec<Vec<u32>>,
        layers: Vec<i64>,
        pool: &str,
        baseline: PyReadonlyArray1<'_, f32>,
        weights: Option<Vec<Vec<f32>>>,
    ) -> PyResult<()> {
        let terms = RecordTerms::new(prefix, tails, layers, pool, baseline, weights);
        let engine = &*engine;
        run(py, || {
            let engine = engine.engine();
            let terms = terms.checked(&engine, self.n_layers, self.hidden)?;
            let every: Vec<usize> = (0..terms.tails.len()).collect();
            let rows = terms.compute(&engine, &every)?;
            self.inner.lock().unwrap_or_else(|p| p.into_inner()).add_rows(&rows)
        })
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.lock().unwrap_or_else(|p| p.into_inner()).to_bytes())
    }

    /// A partial sum back from `to_bytes`, for a release of `n_layers x hidden` values.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8], n_layers: usize, hidden: usize) -> PyResult<Self> {
        let inner = run(py, || {
            let sum = ClippedSum::from_bytes(data)?;
            if sum.dim() != n_layers * hidden {
                return Err(EpsvecError::InvalidInput(format!(
                    "a partial sum of {} values cannot join a release of {n_layers} x {hidden}",
                    sum.dim()
                )));
            }
            Ok(sum)
        })?;
        Ok(Self { inner: Mutex::new(inner), n_layers, hidden })
    }
}
