//! `epsvec._epsvec` accountant functions; documented in `epsvec.privacy`.

use pyo3::prelude::*;

use super::errors::to_py;
use crate::error::EpsvecError;
use crate::privacy::accounting::{self, Adjacency};

fn adjacency(py: Python<'_>, name: &str) -> PyResult<Adjacency> {
    match name {
        "add_remove" => Ok(Adjacency::AddRemove),
        "substitution" => Ok(Adjacency::Substitution),
        other => Err(to_py(
            py,
            EpsvecError::Privacy(format!("adjacency must be \"add_remove\" or \"substitution\", got {other:?}")),
        )),
    }
}

#[pyfunction]
#[pyo3(signature = (eps, delta, sample_rate, adjacency_name))]
pub fn gaussian_sigma(py: Python<'_>, eps: f64, delta: f64, sample_rate: f64, adjacency_name: &str) -> PyResult<f64> {
    accounting::gaussian_sigma(eps, delta, sample_rate, adjacency(py, adjacency_name)?).map_err(|e| to_py(py, e))
}

#[pyfunction]
#[pyo3(signature = (sigma, delta, sample_rate, adjacency_name))]
pub fn gaussian_epsilon(
    py: Python<'_>,
    sigma: f64,
    delta: f64,
    sample_rate: f64,
    adjacency_name: &str,
) -> PyResult<f64> {
    accounting::gaussian_epsilon(sigma, delta, sample_rate, adjacency(py, adjacency_name)?).map_err(|e| to_py(py, e))
}

#[pyfunction]
#[pyo3(signature = (sigma, eps, sample_rate, adjacency_name))]
pub fn gaussian_delta(py: Python<'_>, sigma: f64, eps: f64, sample_rate: f64, adjacency_name: &str) -> PyResult<f64> {
    accounting::gaussian_delta(sigma, eps, sample_rate, adjacency(py, adjacency_name)?).map_err(|e| to_py(py, e))
}
