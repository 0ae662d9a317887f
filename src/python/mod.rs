//! PyO3 bindings, kept thin: extract arguments, run the engine with the GIL
//! released, convert the result.

mod engine;
mod errors;
mod privacy;
mod release;
mod sampling;
mod vector;

use pyo3::prelude::*;

#[pymodule]
fn _epsvec(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::PyEngine>()?;
    m.add_class::<sampling::PySamplingParams>()?;
    m.add_class::<release::PyPrivateRelease>()?;
    m.add_class::<release::PyClippedSum>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(engine::cuda_device_count, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::sample_logits, m)?)?;
    m.add_function(wrap_pyfunction!(privacy::gaussian_sigma, m)?)?;
    m.add_function(wrap_pyfunction!(privacy::gaussian_epsilon, m)?)?;
    m.add_function(wrap_pyfunction!(privacy::gaussian_delta, m)?)?;
    m.add_function(wrap_pyfunction!(vector::save_vector, m)?)?;
    m.add_function(wrap_pyfunction!(vector::load_vector, m)?)?;
    Ok(())
}
