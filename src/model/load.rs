//! Opening a checkpoint: an HF directory (config.json + safetensors +
//! tokenizer.json) or a single `.gguf` file.

use std::path::{Path, PathBuf};

use crate::error::{EpsvecError, Result};
use crate::gguf::GgufFile;
use crate::model::blocks::BlockMode;
use crate::model::config::ModelConfig;
use crate::model::decoder::Decoder;
use crate::model::placement::Placement;
use crate::model::weights::{GgufWeights, SafetensorsWeights};
use crate::tokenizer::gguf::spec_from_metadata;
use crate::tokenizer::Tokenizer;

/// A loaded checkpoint.
pub struct Checkpoint {
    pub model: Decoder,
    pub tokenizer: Tokenizer,
    /// "safetensors" or "gguf".
    pub format: &'static str,
    /// The files the weights came from (for the fingerprint).
    pub weight_files: Vec<PathBuf>,
}

/// Loads the checkpoint at `path` onto `at`; `blocks` says whether a GGUF
/// file's quantized linears and embeddings stay in their blocks (CPU
/// float32 only; elsewhere every tensor is dequantized at load).
pub fn load_checkpoint(path: &Path, at: Placement, blocks: BlockMode) -> Result<Checkpoint> {
    if path.is_dir() {
        let (model, tokenizer, weight_files) = load_hf_dir(path, at)?;
        Ok(Checkpoint { model, tokenizer, format: "safetensors", weight_files })
    } else if path.is_file() {
        let (model, tokenizer) = load_gguf(path, at, blocks)?;
        Ok(Checkpoint { model, tokenizer, format: "gguf", weight_files: vec![path.to_path_buf()] })
    } else {
        Err(EpsvecError::ModelLoad(format!(
            "{} does not exist; pass an HF model directory or a .gguf file",
            path.display()
        )))
    }
}

fn load_hf_dir(dir: &Path, at: Placement) -> Result<(Decoder, Tokenizer, Vec<PathBuf>)> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(EpsvecError::ModelLoad(format!(
            "{} has no config.json; is it an HF model directory?",
            dir.display()
        )));
    }
    let mut config = ModelConfig::from_hf_file(&config_path)?;
    merge_generation_config(&mut config, &dir.join("generation_config.json"))?;
    let tokenizer = Tokenizer::from_hf_dir(dir)?;
    let weights = SafetensorsWeights::open_dir(dir)?;
    let files = weights.files();
    Ok((Decoder::load(&weights, config, at)?, tokenizer, files))
}

/// `generation_config.json` may list more end-of-sequence ids than config.json.
fn merge_generation_config(config: &mut ModelConfig, path: &Path) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| EpsvecError::io(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EpsvecError::corrupt(path, format!("invalid generation_config.json: {e}")))?;
    let ids: Vec<u32> = match value.get("eos_token_id") {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect(),
        _ => Vec::new(),
    };
    for id in ids {
        if !config.eos_token_ids.contains(&id) {
            config.eos_token_ids.push(id);
        }
    }
    Ok(())
}

fn load_gguf(path: &Path, at: Placement, blocks: BlockMode) -> Result<(Decoder, Tokenizer)> {
    let file = GgufFile::open(path)?;
    let arch = file
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .ok_or_else(|| EpsvecError::corrupt(path, "GGUF metadata lacks general.architecture"))?
        .to_string();
    let spec = spec_from_metadata(&file)?;
    let tokenizer = Tokenizer::from_gguf(&spec, &file)?;
    let vocab_size = file
        .get(&format!("{arch}.vocab_size"))
        .and_then(|v| v.as_u64())
        .map(|v| v as i64)
        .unwrap_or(spec.tokens.len() as i64);
    let rope_factors = match file.tensor("rope_freqs.weight") {
        Some(info) => Some(file.dequantize(info)?),
        None => None,
    };
    let mut config = crate::model::config::from_gguf_metadata(
        &arch,
        |k| file.get(k),
        vocab_size,
        file.tensor("output.weight").is_some(),
        rope_factors,
    )?;
    // llama.cpp loads these biases whenever the file has them.
    let has = |name: &str| file.tensor(&format!("blk.0.{name}.bias")).is_some();
    config.qkv_bias |= has("attn_q");
    config.o_bias = has("attn_output");
    config.mlp_bias = has("ffn_up");
    // transformers undoes llama.cpp's q/k permutation for "llama" files only.
    let unpermute = (arch == "llama").then_some((config.num_heads, config.num_kv_heads));
    let weights = GgufWeights::new(file, unpermute, config.architecture.family(), blocks);
    Ok((Decoder::load(&weights, config, at)?, tokenizer))
}
