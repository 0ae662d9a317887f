//! `epsvec.SamplingParams`: validated in Rust, with HF/vLLM names.

use numpy::PyReadonlyArray2;
use pyo3::prelude::*;
use tch::Tensor;

use super::errors::{run, to_py};
use crate::error::EpsvecError;
use crate::sampling::{Sampler, SamplingParams};

#[pyclass(name = "SamplingParams", module = "epsvec._epsvec", frozen, from_py_object)]
#[derive(Clone)]
pub struct PySamplingParams {
    pub inner: SamplingParams,
}

#[pymethods]
impl PySamplingParams {
    #[new]
    #[pyo3(signature = (*, max_new_tokens = 128, min_new_tokens = 0, temperature = 1.0, top_p = 1.0, top_k = 0,
                        min_p = 0.0, repetition_penalty = 1.0, seed = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        max_new_tokens: i64,
        min_new_tokens: i64,
        temperature: f64,
        top_p: f64,
        top_k: i64,
        min_p: f64,
        repetition_penalty: f64,
        seed: Option<u64>,
    ) -> PyResult<Self> {
        let count = |name: &str, v: i64| {
            usize::try_from(v)
                .map_err(|_| to_py(py, EpsvecError::InvalidInput(format!("{name} must be >= 0, got {v}"))))
        };
        let inner = SamplingParams {
            max_new_tokens: count("max_new_tokens", max_new_tokens)?,
            min_new_tokens: count("min_new_tokens", min_new_tokens)?,
            temperature,
            top_p,
            top_k: count("top_k", top_k)?,
            min_p,
            repetition_penalty,
            seed,
        };
        inner.validate().map_err(|e| to_py(py, e))?;
        Ok(Self { inner })
    }

    #[getter]
    fn max_new_tokens(&self) -> usize {
        self.inner.max_new_tokens
    }
    #[getter]
    fn min_new_tokens(&self) -> usize {
        self.inner.min_new_tokens
    }
    #[getter]
    fn temperature(&self) -> f64 {
        self.inner.temperature
    }
    #[getter]
    fn top_p(&self) -> f64 {
        self.inner.top_p
    }
    #[getter]
    fn top_k(&self) -> usize {
        self.inner.top_k
    }
    #[getter]
    fn min_p(&self) -> f64 {
        self.inner.min_p
    }
    #[getter]
    fn repetition_penalty(&self) -> f64 {
        self.inner.repetition_penalty
    }
    #[getter]
    fn seed(&self) -> Option<u64> {
        self.inner.seed
    }

    fn __repr__(&self) -> String {
        let p = &self.inner;
        format!(
            "SamplingParams(max_new_tokens={}, min_new_tokens={}, temperature={}, top_p={}, top_k={}, min_p={}, \
             repetition_penalty={}, seed={})",
            p.max_new_tokens,
            p.min_new_tokens,
            p.temperature,
            p.top_p,
            p.top_k,
            p.min_p,
            p.repetition_penalty,
            p.seed.map_or("None".to_string(), |s| s.to_string())
        )
    }
}

/// Draws one token per row of `logits` `[rows, vocab]` with the engine's
/// logits processor and sampler (row i uses random stream `streams[i]`).
/// For statistical tests of the sampler.
#[pyfunction]
pub fn sample_logits(
    py: Python<'_>,
    logits: PyReadonlyArray2<'_, f32>,
    streams: Vec<usize>,
    params: PySamplingParams,
) -> PyResult<Vec<i64>> {
    let shape = logits.as_array().shape().to_vec();
    let values: Vec<f32> = logits.as_array().iter().copied().collect();
    run(py, || {
        let logits = Tensor::f_from_slice(&values)?.f_reshape([shape[0] as i64, shape[1] as i64])?;
        let mut sampler = Sampler::new(&params.inner, &streams)?;
        let processed = sampler.process(&logits, None)?;
        Ok(Vec::<i64>::try_from(&sampler.sample(&processed)?)?)
    })
}
