//! epsvec: differentially private synthetic text with dataset vectors.
//!
//! A libtorch engine (via tch) that loads Llama-family checkpoints (HF
//! safetensors or GGUF), reads and edits their residual stream through
//! hooks, and exposes it to Python through the `python` feature.

pub mod engine;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod hooks;
pub mod model;
pub mod privacy;
pub mod sampling;
pub mod tokenizer;
pub mod vector_file;

#[cfg(feature = "python")]
mod python;

pub use engine::Engine;
pub use error::{EpsvecError, Result};
