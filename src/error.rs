//! The one error type of the engine, mapped variant by variant to Python
//! exceptions in `python/errors.rs`.

use std::path::Path;

pub type Result<T> = std::result::Result<T, EpsvecError>;

#[derive(Debug, thiserror::Error)]
pub enum EpsvecError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },

    /// A model file is malformed: truncated, bad magic, inconsistent metadata.
    #[error("corrupt model file {path}: {reason}")]
    CorruptFile { path: String, reason: String },

    /// A model directory or file is well-formed but cannot be used.
    #[error("{0}")]
    ModelLoad(String),

    /// The checkpoint's architecture is not one the engine implements.
    #[error("unsupported architecture {found:?}; supported: {supported}")]
    UnsupportedArchitecture { found: String, supported: String },

    /// A weight has the wrong shape for the config.
    #[error("tensor {name}: expected shape {expected:?}, found {found:?}")]
    Shape { name: String, expected: Vec<i64>, found: Vec<i64> },

    /// Building or running the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// The caller passed input the engine cannot use (empty list, bad layer).
    #[error("{0}")]
    InvalidInput(String),

    /// The requested device is not available (e.g. CUDA without a GPU).
    #[error("{0}")]
    Device(String),

    /// An impossible privacy parameter (eps <= 0, delta outside (0, 1), ...).
    #[error("{0}")]
    Privacy(String),

    /// libtorch reported an error while running an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl EpsvecError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), source }
    }

    pub fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        Self::CorruptFile { path: path.display().to_string(), reason: reason.into() }
    }
}
