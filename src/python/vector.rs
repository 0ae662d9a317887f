//! Vector files; documented in `epsvec.vector`.

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;

use super::errors::run;
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
