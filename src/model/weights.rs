//! Weight sources: tensors looked up by their HF names, whatever the file
//! format, converted to the engine's dtype and device on load.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata};
use safetensors::SafeTensors;
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use crate::error::{EpsvecError, Result};
use crate::gguf::{GgufFile, TensorInfo};
use crate::model::blocks::{BlockMode, BlockWeight, Bytes};
use crate::model::config::Family;

/// Where a model's weights come from.
pub trait WeightSource {
    /// Whether the checkpoint has a tensor of this HF name.
    fn contains(&self, name: &str) -> bool;
    /// The tensor called `name` (HF naming) with exactly `shape`, as `kind` on `device`.
    fn load(&self, name: &str, shape: &[i64], kind: Kind, device: Device) -> Result<Tensor>;
    /// The tensor called `name` with exactly `shape` `[out, in]`, in its
    /// quantized GGUF blocks, when the source keeps blocks and holds it so;
    /// `None` otherwise (then `load` gives it).
    fn load_blocks(&self, _name: &str, _shape: &[i64]) -> Result<Option<BlockWeight>> {
        Ok(None)
    }
}

fn check_shape(name: &str, expected: &[i64], found: &[i64]) -> Result<()> {
    if expected != found {
        return Err(EpsvecError::Shape { name: name.into(), expected: expected.to_vec(), found: found.to_vec() });
    }
    Ok(())
}

fn missing(name: &str, path: &Path) -> EpsvecError {
    EpsvecError::ModelLoad(format!("tensor {name} not found in {}", path.display()))
}

fn open_mmap(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| EpsvecError::io(path, e))?;
    // SAFETY: the map is read-only; a file truncated underneath us is the
    // one hazard, the same one every mmap-based loader accepts.
    unsafe { Mmap::map(&file) }.map_err(|e| EpsvecError::io(path, e))
}

/// One memory-mapped `.safetensors` file with its parsed header.
struct SafetensorsFile {
    path: PathBuf,
    mmap: Mmap,
    header_len: usize,
    metadata: Metadata,
}

impl SafetensorsFile {
    fn open(path: &Path) -> Result<Self> {
        let mmap = open_mmap(path)?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&mmap).map_err(|e| EpsvecError::corrupt(path, e.to_string()))?;
        Ok(Self { path: path.to_path_buf(), mmap, header_len, metadata })
    }
}

/// HF checkpoints: `model.safetensors`, or shards listed in
/// `model.safetensors.index.json`.
pub struct SafetensorsWeights {
    files: Vec<SafetensorsFile>,
    /// Tensor name -> index into `files`.
    index: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

impl SafetensorsWeights {
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let paths: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| EpsvecError::io(&index_path, e))?;
            let index: ShardIndex = serde_json::from_str(&text)
                .map_err(|e| EpsvecError::corrupt(&index_path, format!("invalid shard index: {e}")))?;
            let mut shards: Vec<&String> = index.weight_map.values().collect();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            return Err(EpsvecError::ModelLoad(format!(
                "no model.safetensors or model.safetensors.index.json in {}",
                dir.display()
            )));
        };
        let files = paths.iter().map(|p| SafetensorsFile::open(p)).collect::<Result<Vec<_>>>()?;
        let mut index = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            for name in file.metadata.tensors().keys() {
                index.insert(name.clone(), i);
            }
        }
        Ok(Self { files, index })
    }
}

impl SafetensorsWeights {
    /// The shard files, in a stable order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
}

impl WeightSource for SafetensorsWeights {
    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn load(&self, name: &str, shape: &[i64], kind: Kind, device: Device) -> Result<Tensor> {
        let file = self.index.get(name).map(|&i| &self.files[i]).ok_or_else(|| {
            EpsvecError::ModelLoad(format!("tensor {name} not found in the checkpoint's safetensors files"))
        })?;
        let info = file.metadata.info(name).ok_or_else(|| missing(name, &file.path))?;
        let found: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        check_shape(name, shape, &found)?;
        let file_kind = match info.dtype {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            other => return Err(EpsvecError::ModelLoad(format!("tensor {name} has unsupported dtype {other:?}"))),
        };
        let (start, end) = info.data_offsets;
        let base = 8 + file.header_len;
        let bytes = file
            .mmap
            .get(base + start..base + end)
            .ok_or_else(|| EpsvecError::corrupt(&file.path, format!("tensor {name} lies outside the file")))?;
        let tensor = Tensor::f_from_data_size(bytes, &found, file_kind)?;
        Ok(tensor.f_to_device(device)?.f_to_kind(kind)?)
    }
}

/// A `.gguf` file: quantized tensors kept in their blocks (unless `blocks`
/// is `Dequantized`; through `load_blocks`), the rest dequantized tensor by
/// tensor on load.
pub struct GgufWeights {
    pub file: GgufFile,
    /// llama.cpp stores Llama q/k weights permuted for its interleaved RoPE;
    /// undo that so the HF (rotate-half) forward applies.
    unpermute_heads: Option<(i64, i64)>,
    family: Family,
    blocks: BlockMode,
}

impl GgufWeights {
    pub fn new(file: GgufFile, unpermute_heads: Option<(i64, i64)>, family: Family, blocks: BlockMode) -> Self {
        Self { file, unpermute_heads, family, blocks }
    }

    /// The GGUF tensor for HF `name`, checked to have `shape`.
    fn info(&self, name: &str, shape: &[i64]) -> Result<(String, &TensorInfo)> {
        let gname = gguf_name(name, self.family).ok_or_else(|| missing(name, self.file.path()))?;
        let info = self.file.tensor(&gname).ok_or_else(|| missing(&gname, self.file.path()))?;
        check_shape(name, shape, &info.shape())?;
        Ok((gname, info))
    }

    /// The heads to undo llama.cpp's q/k permutation over, for this tensor.
    fn permuted_heads(&self, gname: &str) -> Option<i64> {
        let (n_head, n_kv_head) = self.unpermute_heads?;
        if gname.contains(".attn_q.") {
            Some(n_head)
        } else if gname.contains(".attn_k.") {
            Some(n_kv_head)
        } else {
            None
        }
    }
}

/// The llama.cpp name of an HF tensor name, in a model of `family` (Gemma's
/// and OLMo's post-norms take names llama.cpp uses differently for Llama).
pub fn gguf_name(hf: &str, family: Family) -> Option<String> {
    let top = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = top {
        return Some(name.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let (module, suffix) = part.rsplit_once('.')?;
    let gguf = match (module, family) {
        ("post_attention_layernorm", Family::Gemma | Family::Olmo) => "post_attention_norm",
        ("pre_feedforward_layernorm", Family::Gemma) => "ffn_norm",
        ("post_feedforward_layernorm", Family::Gemma | Family::Olmo) => "post_ffw_norm",
        (module, _) => match module {
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" => "ffn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "self_attn.q_norm" => "attn_q_norm",
            "self_attn.k_norm" => "attn_k_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => return None,
        },
    };
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

/// Inverse of llama.cpp's `permute(w, n_head)`, which regroups each head's
/// rows from (2, dim/2) to (dim/2, 2); this swaps them back.
fn unpermute(w: &Tensor, n_head: i64) -> Result<Tensor> {
    let shape = w.size();
    let rows = shape[0];
    let mut split = vec![n_head, rows / n_head / 2, 2];
    split.extend_from_slice(&shape[1..]);
    Ok(w.f_reshape(&split)?.f_transpose(1, 2)?.f_reshape(&shape)?)
}

impl WeightSource for GgufWeights {
    fn contains(&self, name: &str) -> bool {
        gguf_name(name, self.family).is_some_and(|g| self.file.tensor(&g).is_some())
    }

    fn load(&self, name: &str, shape: &[i64], kind: Kind, device: Device) -> Result<Tensor> {
        let (gname, info) = self.info(name, shape)?;
        let mut values = self.file.dequantize(info)?;
        if self.family == Family::Gemma && gname.ends_with("norm.weight") {
            // llama.cpp's converter stores Gemma's norm weights as 1 + w; HF keeps w.
            values.iter_mut().for_each(|v| *v -= 1.0);
        }
        let mut tensor = Tensor::f_from_slice(&values)?.f_reshape(shape)?;
        if let Some(heads) = self.permuted_heads(&gname) {
            tensor = unpermute(&tensor, heads)?;
        }
        Ok(tensor.f_to_device(device)?.f_to_kind(kind)?)
    }

    fn load_blocks(&self, name: &str, shape: &[i64]) -> Result<Option<BlockWeight>> {
        let (gname, info) = self.info(name, shape)?;
        if self.blocks == BlockMode::Dequantized || !BlockWeight::keeps(info.ty) {
            return Ok(None);
        }
        let bytes = self
            .file
            .tensor_mapped(info)
            .ok_or_else(|| EpsvecError::corrupt(self.file.path(), format!("tensor {gname} lies outside the file")))?;
        let (rows, in_dim) = (shape[0], shape[1]);
        let blocks = BlockWeight::new(info.ty, rows as usize, in_dim as usize, Bytes::Mapped(bytes))
            .map_err(|e| EpsvecError::corrupt(self.file.path(), format!("tensor {gname}: {e}")))?
            .decoding_as(self.blocks);
        let Some(heads) = self.permuted_heads(&gname) else { return Ok(Some(blocks)) };
        // The same row order the dense path gets, read off row indices.
        let order = unpermute(&Tensor::f_arange(rows, (Kind::Int64, Device::Cpu))?.f_reshape([rows, 1])?, heads)?;
        let order: Vec<usize> = Vec::<i64>::try_from(order.f_reshape([-1])?)?.into_iter().map(|r| r as usize).collect();
        Ok(Some(blocks.reorder_rows(&order)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_hf_names_to_gguf() {
        let name = |hf: &str, family| gguf_name(hf, family);
        assert_eq!(name("model.layers.3.self_attn.q_proj.bias", Family::Llama).as_deref(), Some("blk.3.attn_q.bias"));
        assert_eq!(
            name("model.layers.0.mlp.down_proj.weight", Family::Llama).as_deref(),
            Some("blk.0.ffn_down.weight")
        );
        assert_eq!(name("lm_head.weight", Family::Llama).as_deref(), Some("output.weight"));
        assert_eq!(name("model.layers.0.unknown.weight", Family::Llama), None);
        let gemma = |hf: &str| name(&format!("model.layers.2.{hf}.weight"), Family::Gemma);
        assert_eq!(gemma("post_attention_layernorm").as_deref(), Some("blk.2.post_attention_norm.weight"));
        assert_eq!(gemma("pre_feedforward_layernorm").as_deref(), Some("blk.2.ffn_norm.weight"));
        assert_eq!(gemma("post_feedforward_layernorm").as_deref(), Some("blk.2.post_ffw_norm.weight"));
        assert_eq!(
            name("model.layers.2.post_attention_layernorm.weight", Family::Llama).as_deref(),
            Some("blk.2.ffn_norm.weight")
        );
        let olmo = |hf: &str| name(&format!("model.layers.1.{hf}.weight"), Family::Olmo);
        assert_eq!(olmo("post_attention_layernorm").as_deref(), Some("blk.1.post_attention_norm.weight"));
        assert_eq!(olmo("post_feedforward_layernorm").as_deref(), Some("blk.1.post_ffw_norm.weight"));
        assert_eq!(olmo("self_attn.q_norm").as_deref(), Some("blk.1.attn_q_norm.weight"));
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2)
        let (n_head, rows, cols) = (2, 8, 3);
        let w = Tensor::arange(rows * cols, (Kind::Float, Device::Cpu)).reshape([rows, cols]);
        let permuted = w.reshape([n_head, 2, rows / n_head / 2, cols]).transpose(1, 2).reshape([rows, cols]);
        let back = unpermute(&permuted, n_head).unwrap();
        assert!(back.equal(&w));
    }
}
