//! Checkpoints and the decoder they describe.

pub mod config;
pub mod dequant;
pub mod fingerprint;
pub mod gguf;
pub mod kv_cache;
pub mod llama;
pub mod load;
pub mod weights;
