//! The Llama-family decoder (Llama 2/3, Mistral, Qwen2, Qwen3, SmolLM),
//! written to match HF transformers' modeling code op for op.

use tch::{Device, Kind, Tensor};

use crate::error::{EpsvecError, Result};
use crate::hooks::BlockHook;
use crate::model::config::{ModelConfig, RopeScaling};
use crate::model::kv_cache::KvCache;
use crate::model::weights::WeightSource;

/// What the engine loads tensors as.
#[derive(Clone, Copy)]
pub struct Placement {
    pub device: Device,
    pub kind: Kind,
}

struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    /// Weight and bias held in oneDNN's layout (CPU float32), where its
    /// GEMM is ~1.7x faster than the default for the few-row products of
    /// decoding; `forward` converts the activations around the call.
    mkldnn: bool,
}

impl Linear {
    /// Loads several HF linears stacked along the output dimension, so one
    /// matmul serves them all (fused q/k/v, fused gate/up).
    fn load_fused(
        src: &dyn WeightSource,
        prefixes: &[(&str, i64)],
        in_dim: i64,
        bias: bool,
        at: Placement,
    ) -> Result<Self> {
        let mut weights = Vec::with_capacity(prefixes.len());
        let mut biases = Vec::with_capacity(prefixes.len());
        for &(prefix, out_dim) in prefixes {
            weights.push(src.load(&format!("{prefix}.weight"), &[out_dim, in_dim], at.kind, at.device)?);
            if bias {
                biases.push(src.load(&format!("{prefix}.bias"), &[out_dim], at.kind, at.device)?);
            }
        }
        let weight = if weights.len() == 1 { weights.remove(0) } else { Tensor::f_cat(&weights, 0)? };
        let bias = match biases.len() {
            0 => None,
            1 => Some(biases.remove(0)),
            _ => Some(Tensor::f_cat(&biases, 0)?),
        };
        Self::new(weight, bias, at)
    }

    fn new(weight: Tensor, bias: Option<Tensor>, at: Placement) -> Result<Self> {
        if at.device != Device::Cpu || at.kind != Kind::Float {
            return Ok(Self { weight, bias, mkldnn: false });
        }
        let bias = bias.map(|b| b.f_to_mkldnn(None)).transpose()?;
        Ok(Self { weight: weight.f_to_mkldnn(None)?, bias, mkldnn: true })
    }

    fn load(
        src: &dyn WeightSource,
        prefix: &str,
        out_dim: i64,
        in_dim: i64,
        bias: bool,
        at: Placement,
    ) -> Result<Self> {
        Self::load_fused(src, &[(prefix, out_dim)], in_dim, bias, at)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.mkldnn {
            return Ok(x.f_linear(&self.weight, self.bias.as_ref())?);
        }
        let mut shape = x.size();
        let in_dim = shape.pop().unwrap_or(0);
        let rows = x.f_reshape([-1, in_dim])?.f_contiguous()?.f_to_mkldnn(None)?;
        let out = rows.f_mkldnn_linear(&self.weight, self.bias.as_ref())?.f_to_dense(None, false)?;
        shape.push(out.size()[1]);
        Ok(out.f_reshape(shape.as_slice())?)
    }
}

/// HF `LlamaRMSNorm`: normalise in float32, scale in the model dtype.
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(src: &dyn WeightSource, name: &str, dim: i64, eps: f64, at: Placement) -> Result<Self> {
        Ok(Self { weight: src.load(name, &[dim], at.kind, at.device)?, eps })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let kind = x.kind();
        if kind == Kind::Float {
            // One fused kernel; the same arithmetic as below in float32.
            let dim = self.weight.size();
            return Ok(x.f_rms_norm(dim.as_slice(), Some(&self.weight), self.eps)?);
        }
        let x32 = x.f_to_kind(Kind::Float)?;
        let variance = x32.f_pow_tensor_scalar(2)?.f_mean_dim(-1, true, Kind::Float)?;
        let normed = x32.f_mul(&variance.f_add_scalar(self.eps)?.f_rsqrt()?)?;
        Ok(self.weight.f_mul(&normed.f_to_kind(kind)?)?)
    }
}

struct Attention {
    qkv: Linear,
    o_proj: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
}

/// Rotary position embedding tables for one batch, `[batch, 1, seq, head_dim]`.
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let half = x.size().last().copied().unwrap_or(0) / 2;
    let x1 = x.f_narrow(-1, 0, half)?;
    let x2 = x.f_narrow(-1, half, half)?;
    Ok(Tensor::f_cat(&[x2.f_neg()?, x1], -1)?)
}

impl Rope {
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_mul(&self.cos)?.f_add(&rotate_half(x)?.f_mul(&self.sin)?)?)
    }
}

impl Attention {
    fn load(src: &dyn WeightSource, prefix: &str, cfg: &ModelConfig, at: Placement) -> Result<Self> {
        let (h, q_dim, kv_dim) = (cfg.hidden_size, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim);
        let qkv = Linear::load_fused(
            src,
            &[
                (&format!("{prefix}.q_proj"), q_dim),
                (&format!("{prefix}.k_proj"), kv_dim),
                (&format!("{prefix}.v_proj"), kv_dim),
            ],
            h,
            cfg.qkv_bias,
            at,
        )?;
        let norm =
            |name: &str| RmsNorm::load(src, &format!("{prefix}.{name}.weight"), cfg.head_dim, cfg.rms_norm_eps, at);
        Ok(Self {
            qkv,
            o_proj: Linear::load(src, &format!("{prefix}.o_proj"), h, q_dim, cfg.o_bias, at)?,
            q_norm: if cfg.qk_norm { Some(norm("q_norm")?) } else { None },
            k_norm: if cfg.qk_norm { Some(norm("k_norm")?) } else { None },
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
        })
    }

    /// `x`: `[batch, seq, hidden]`; `mask`: boolean `[batch, 1, seq, keys]`
    /// where keys are the cached positions followed by the new ones.
    fn forward(&self, x: &Tensor, rope: &Rope, mask: &Tensor, cache: Option<(&mut KvCache, usize)>) -> Result<Tensor> {
        let (b, t) = (x.size()[0], x.size()[1]);
        let q_dim = self.num_heads * self.head_dim;
        let kv_dim = self.num_kv_heads * self.head_dim;
        let qkv = self.qkv.forward(x)?;
        let heads = |start: i64, len: i64, n: i64, norm: &Option<RmsNorm>| -> Result<Tensor> {
            let mut part = qkv.f_narrow(-1, start, len)?.f_reshape([b, t, n, self.head_dim])?;
            if let Some(norm) = norm {
                part = norm.forward(&part)?;
            }
            Ok(part.f_transpose(1, 2)?)
        };
        let q = rope.apply(&heads(0, q_dim, self.num_heads, &self.q_norm)?)?;
        let k = rope.apply(&heads(q_dim, kv_dim, self.num_kv_heads, &self.k_norm)?)?;
        let v = heads(q_dim + kv_dim, kv_dim, self.num_kv_heads, &None)?;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, &v)?,
            None => (k, v),
        };
        let gqa = self.num_heads != self.num_kv_heads;
        let out = Tensor::f_scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, gqa)?;
        let out = out.f_transpose(1, 2)?.f_reshape([b, t, q_dim])?;
        self.o_proj.forward(&out)
    }
}

struct Mlp {
    gate_up: Linear,
    down: Linear,
    intermediate: i64,
}

impl Mlp {
    fn load(src: &dyn WeightSource, prefix: &str, cfg: &ModelConfig, at: Placement) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let gate_up = Linear::load_fused(
            src,
            &[(&format!("{prefix}.gate_proj"), i), (&format!("{prefix}.up_proj"), i)],
            h,
            cfg.mlp_bias,
            at,
        )?;
        let down = Linear::load(src, &format!("{prefix}.down_proj"), h, i, cfg.mlp_bias, at)?;
        Ok(Self { gate_up, down, intermediate: i })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate_up = self.gate_up.forward(x)?;
        let gate = gate_up.f_narrow(-1, 0, self.intermediate)?;
        let up = gate_up.f_narrow(-1, self.intermediate, self.intermediate)?;
        self.down.forward(&gate.f_silu()?.f_mul(&up)?)
    }
}

struct Block {
    input_norm: RmsNorm,
    attention: Attention,
    post_norm: RmsNorm,
    mlp: Mlp,
    sliding_window: Option<i64>,
}

impl Block {
    fn load(src: &dyn WeightSource, layer: usize, cfg: &ModelConfig, at: Placement) -> Result<Self> {
        let p = format!("model.layers.{layer}");
        let norm =
            |name: &str| RmsNorm::load(src, &format!("{p}.{name}.weight"), cfg.hidden_size, cfg.rms_norm_eps, at);
        Ok(Self {
            input_norm: norm("input_layernorm")?,
            attention: Attention::load(src, &format!("{p}.self_attn"), cfg, at)?,
            post_norm: norm("post_attention_layernorm")?,
            mlp: Mlp::load(src, &format!("{p}.mlp"), cfg, at)?,
            sliding_window: cfg.sliding_window[layer],
        })
    }

    fn forward(&self, x: &Tensor, rope: &Rope, mask: &Tensor, cache: Option<(&mut KvCache, usize)>) -> Result<Tensor> {
        let h = x.f_add(&self.attention.forward(&self.input_norm.forward(x)?, rope, mask, cache)?)?;
        Ok(h.f_add(&self.mlp.forward(&self.post_norm.forward(&h)?)?)?)
    }
}

/// A left-padded batch of token ids: a whole sequence, or the next tokens
/// after what a KV cache holds.
pub struct Batch {
    /// `[batch, seq]` int64.
    pub input_ids: Tensor,
    /// `[batch, cached + seq]` int64, 1 on real tokens, over the cached
    /// positions followed by the new ones.
    pub attention_mask: Tensor,
    /// `[batch, seq]` int64 positions counted from each row's first real
    /// token, so padding never shifts a text's positions.
    pub positions: Tensor,
}

impl Batch {
    /// Left-pads `rows` (each non-empty) with `pad_id`.
    pub fn left_padded(rows: &[&[u32]], pad_id: u32, device: Device) -> Result<Self> {
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        if width == 0 || rows.iter().any(|r| r.is_empty()) {
            return Err(EpsvecError::InvalidInput("cannot run the model on an empty token sequence".into()));
        }
        let n = rows.len();
        let mut ids = vec![pad_id as i64; n * width];
        let mut mask = vec![0i64; n * width];
        let mut positions = vec![0i64; n * width];
        for (r, row) in rows.iter().enumerate() {
            let offset = r * width + width - row.len();
            for (j, &id) in row.iter().enumerate() {
                ids[offset + j] = id as i64;
                mask[offset + j] = 1;
                positions[offset + j] = j as i64;
            }
        }
        let shape = [n as i64, width as i64];
        let tensor =
            |v: &[i64]| -> Result<Tensor> { Ok(Tensor::f_from_slice(v)?.f_reshape(shape)?.f_to_device(device)?) };
        Ok(Self { input_ids: tensor(&ids)?, attention_mask: tensor(&mask)?, positions: tensor(&positions)? })
    }

    /// The same rows as the continuation of a `prefix`-token sequence held in
    /// a KV cache: positions shifted by `prefix`, the cached keys unmasked.
    /// (Padding then sits between the prefix and the row, which a sliding
    /// window, counted in key slots, would misread.)
    pub fn after_prefix(&self, prefix: i64) -> Result<Self> {
        let rows = self.input_ids.size()[0];
        let cached = Tensor::f_ones([rows, prefix], (Kind::Int64, self.input_ids.device()))?;
        Ok(Self {
            input_ids: self.input_ids.shallow_clone(),
            attention_mask: Tensor::f_cat(&[&cached, &self.attention_mask], 1)?,
            positions: self.positions.f_add_scalar(prefix)?,
        })
    }
}

/// Boolean attention mask `[batch, 1, queries, keys]` for the last
/// `queries` of the `keys` positions: causal, real keys only, within the
/// sliding window if any. Every query may also see itself, so a padding row
/// is never fully masked (which would give NaN and poison the real rows
/// through later layers).
pub fn attention_mask(key_mask: &Tensor, queries: i64, window: Option<i64>) -> Result<Tensor> {
    let keys = key_mask.size()[1];
    let device = key_mask.device();
    let q = Tensor::f_arange_start(keys - queries, keys, (Kind::Int64, device))?.f_unsqueeze(1)?;
    let k = Tensor::f_arange(keys, (Kind::Int64, device))?.f_unsqueeze(0)?;
    let mut allowed = k.f_le_tensor(&q)?;
    if let Some(w) = window {
        allowed = allowed.f_logical_and(&k.f_gt_tensor(&q.f_sub_scalar(w)?)?)?;
    }
    let real_keys = key_mask.f_ne(0)?.f_unsqueeze(1)?.f_unsqueeze(1)?;
    let diagonal = k.f_eq_tensor(&q)?;
    Ok(allowed.f_unsqueeze(0)?.f_unsqueeze(0)?.f_logical_and(&real_keys)?.f_logical_or(&diagonal)?)
}

/// The loaded decoder.
pub struct Llama {
    pub config: ModelConfig,
    pub placement: Placement,
    embed_tokens: Tensor,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    /// `[head_dim / 2]` float32 rotary frequencies, scaling applied.
    inv_freq: Tensor,
}

impl Llama {
    pub fn load(src: &dyn WeightSource, config: ModelConfig, at: Placement) -> Result<Self> {
        let (v, h) = (config.vocab_size, config.hidden_size);
        let embed_tokens = src.load("model.embed_tokens.weight", &[v, h], at.kind, at.device)?;
        let lm_head = if config.tie_word_embeddings || !src.contains("lm_head.weight") {
            embed_tokens.shallow_clone()
        } else {
            src.load("lm_head.weight", &[v, h], at.kind, at.device)?
        };
        let lm_head = Linear::new(lm_head, None, at)?;
        let layers = (0..config.num_layers).map(|l| Block::load(src, l, &config, at)).collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(src, "model.norm.weight", h, config.rms_norm_eps, at)?;
        let inv_freq = rope_inv_freq(&config, at.device)?;
        Ok(Self { config, placement: at, embed_tokens, layers, norm, lm_head, inv_freq })
    }

    fn rope(&self, positions: &Tensor) -> Result<Rope> {
        // HF: freqs in float32, then cos/sin cast to the activations' dtype.
        let freqs = positions.f_to_kind(Kind::Float)?.f_unsqueeze(-1)?.f_mul(&self.inv_freq)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        let kind = self.placement.kind;
        Ok(Rope {
            cos: emb.f_cos()?.f_to_kind(kind)?.f_unsqueeze(1)?,
            sin: emb.f_sin()?.f_to_kind(kind)?.f_unsqueeze(1)?,
        })
    }

    /// Runs the blocks over `batch`, handing each block's output to every
    /// hook. With a cache, `batch` holds the tokens after the cached ones and
    /// their keys/values are added to it. Without `logits`, stops after the
    /// deepest block a hook needs. Returns the last computed residual stream,
    /// final-normed when every block ran.
    pub fn forward(
        &self,
        batch: &Batch,
        mut cache: Option<&mut KvCache>,
        hooks: &mut [&mut dyn BlockHook],
        logits: bool,
    ) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let n_layers = self.layers.len();
        let last = match hooks.iter().filter_map(|h| h.last_layer()).max() {
            Some(deepest) if !logits => deepest,
            _ => n_layers - 1,
        };
        if last >= n_layers {
            return Err(EpsvecError::InvalidInput(format!(
                "layer {last} does not exist; the model has {n_layers} layers (0..{})",
                n_layers - 1
            )));
        }
        let queries = batch.input_ids.size()[1];
        let rope = self.rope(&batch.positions)?;
        let mut masks: Vec<(Option<i64>, Tensor)> = Vec::new();
        let mut hidden = Tensor::f_embedding(&self.embed_tokens, &batch.input_ids, -1, false, false)?;
        for (l, block) in self.layers[..=last].iter().enumerate() {
            let window = block.sliding_window;
            if !masks.iter().any(|(w, _)| *w == window) {
                masks.push((window, attention_mask(&batch.attention_mask, queries, window)?));
            }
            let mask = &masks.iter().find(|(w, _)| *w == window).expect("just inserted").1;
            hidden = block.forward(&hidden, &rope, mask, cache.as_deref_mut().map(|c| (c, l)))?;
            for hook in hooks.iter_mut() {
                hook.after_block(l, &mut hidden)?;
            }
        }
        if let Some(cache) = cache {
            cache.advance(queries);
        }
        if last + 1 == n_layers {
            hidden = self.norm.forward(&hidden)?;
        }
        Ok(hidden)
    }

    /// Vocabulary logits for final-normed hidden states.
    pub fn logits(&self, normed: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(normed)
    }
}

/// HF's rotary inverse frequencies (float32), with llama3 scaling or GGUF
/// per-frequency factors applied.
fn rope_inv_freq(cfg: &ModelConfig, device: Device) -> Result<Tensor> {
    let dim = cfg.head_dim;
    let exponents = Tensor::f_arange_start_step(0, dim, 2, (Kind::Int64, Device::Cpu))?
        .f_to_kind(Kind::Float)?
        .f_div_scalar(dim as f64)?;
    let base = Tensor::f_pow_scalar(cfg.rope_theta, &exponents)?.f_to_kind(Kind::Float)?;
    let inv_freq = base.f_reciprocal()?;
    let inv_freq = match &cfg.rope_scaling {
        RopeScaling::None => inv_freq,
        RopeScaling::Factors(factors) => {
            if factors.len() as i64 != dim / 2 {
                return Err(EpsvecError::ModelLoad(format!(
                    "rope_freqs has {} factors for head_dim {dim}",
                    factors.len()
                )));
            }
            inv_freq.f_div(&Tensor::f_from_slice(factors)?)?
        }
        &RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position } => {
            let low_wavelen = original_max_position / low_freq_factor;
            let high_wavelen = original_max_position / high_freq_factor;
            let wavelen = inv_freq.f_reciprocal()?.f_mul_scalar(2.0 * std::f64::consts::PI)?;
            let scaled = inv_freq.f_div_scalar(factor)?;
            let llama = scaled.f_where_self(&wavelen.f_gt(low_wavelen)?, &inv_freq)?;
            let smooth = wavelen
                .f_reciprocal()?
                .f_mul_scalar(original_max_position)?
                .f_sub_scalar(low_freq_factor)?
                .f_div_scalar(high_freq_factor - low_freq_factor)?;
            let smoothed = smooth
                .f_neg()?
                .f_add_scalar(1.0)?
                .f_mul(&llama.f_div_scalar(factor)?)?
                .f_add(&smooth.f_mul(&llama)?)?;
            let medium = wavelen.f_ge(high_wavelen)?.f_logical_and(&wavelen.f_le(low_wavelen)?)?;
            smoothed.f_where_self(&medium, &llama)?
        }
    };
    Ok(inv_freq.f_to_device(device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_causal_padded_and_never_empty() {
        // One row: [pad, a, b].
        let key_mask = Tensor::from_slice(&[0i64, 1, 1]).reshape([1, 3]);
        let mask = attention_mask(&key_mask, 3, None).unwrap();
        let want = Tensor::from_slice(&[
            true, false, false, // the pad query sees only itself
            false, true, false, //
            false, true, true,
        ])
        .reshape([1, 1, 3, 3]);
        assert!(mask.equal(&want));
    }

    #[test]
    fn sliding_window_limits_distance() {
        let key_mask = Tensor::from_slice(&[1i64, 1, 1, 1]).reshape([1, 4]);
        let mask = attention_mask(&key_mask, 4, Some(2)).unwrap();
        let want = Tensor::from_slice(&[
            true, false, false, false, //
            true, true, false, false, //
            false, true, true, false, //
            false, false, true, true,
        ])
        .reshape([1, 1, 4, 4]);
        assert!(mask.equal(&want));
    }

    #[test]
    fn left_padding_keeps_positions() {
        let batch = Batch::left_padded(&[&[5, 6, 7], &[8]], 0, Device::Cpu).unwrap();
        let ids: Vec<i64> = Vec::try_from(batch.input_ids.flatten(0, 1)).unwrap();
        let pos: Vec<i64> = Vec::try_from(batch.positions.flatten(0, 1)).unwrap();
        assert_eq!(ids, vec![5, 6, 7, 0, 0, 8]);
        assert_eq!(pos, vec![0, 1, 2, 0, 0, 0]);
        assert!(Batch::left_padded(&[&[1], &[]], 0, Device::Cpu).is_err());
    }
}
