//! Checkpoints and the decoder they describe: configuration and the
//! architecture registry, weight sources (safetensors, GGUF via
//! `crate::gguf`), the shared layers, one block module per family, and the
//! decoder that runs them.

pub mod config;
pub mod decoder;
pub mod fingerprint;
pub mod gemma;
pub mod kernels;
pub mod kv_cache;
pub mod layers;
pub mod llama;
pub mod load;
pub mod olmo;
pub mod placement;
pub mod weights;
