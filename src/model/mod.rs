//! Checkpoints and the decoder they describe: configuration and the
//! architecture registry, weight sources (safetensors, GGUF via
//! `crate::gguf`, kept in their blocks on the CPU), the shared layers, one block module per family, the
//! decoder that runs them, and its plain-Rust CPU decoding step.

pub mod block;
pub mod blocks;
pub mod config;
pub mod decode_step;
pub mod decoder;
pub mod fingerprint;
pub mod kernels;
pub mod kv_cache;
pub mod layers;
pub mod load;
pub mod matmul;
pub mod placement;
pub mod weights;
