//! `EpsvecError` -> the Python exception classes of `epsvec.errors`,
//! variant by variant; a Rust panic becomes `EngineError`, never a crash.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;

use crate::error::EpsvecError;

fn class_name(err: &EpsvecError) -> &'static str {
    match err {
        EpsvecError::Io { .. } | EpsvecError::ModelLoad(_) => "ModelLoadError",
        EpsvecError::CorruptFile { .. } => "CorruptFileError",
        EpsvecError::UnsupportedArchitecture { .. } => "UnsupportedArchitectureError",
        EpsvecError::Shape { .. } => "ShapeMismatchError",
        EpsvecError::Tokenizer(_) => "TokenizerError",
        EpsvecError::InvalidInput(_) => "InvalidInputError",
        EpsvecError::Device(_) => "DeviceError",
        EpsvecError::Privacy(_) => "PrivacyError",
        EpsvecError::Torch(_) => "EngineError",
    }
}

fn raise(py: Python<'_>, class: &str, message: String) -> PyErr {
    match py.import("epsvec.errors").and_then(|m| m.getattr(class)) {
        Ok(cls) => PyErr::from_value(match cls.call1((message.clone(),)) {
            Ok(instance) => instance,
            Err(e) => return e,
        }),
        Err(_) => pyo3::exceptions::PyRuntimeError::new_err(message),
    }
}

pub fn to_py(py: Python<'_>, err: EpsvecError) -> PyErr {
    raise(py, class_name(&err), err.to_string())
}

/// Runs engine work with the GIL released, turning errors and panics into
/// Python exceptions.
pub fn run<T: Send>(py: Python<'_>, work: impl FnOnce() -> crate::Result<T> + Send) -> PyResult<T> {
    let outcome = py.detach(|| catch_unwind(AssertUnwindSafe(work)));
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(to_py(py, err)),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(raise(py, "EngineError", format!("internal engine error: {detail}")))
        }
    }
}
