//! The layers the decoder families share, each written to match HF
//! transformers' modeling code op for op: linears (fused; a tensor with
//! the CPU kernel measured fastest per shape, or GGUF blocks), embeddings,
//! RMSNorm in its three HF styles, rotary embeddings, attention (with q/k
//! norms, custom scale and logit soft-capping), the gated MLP, masks and
//! left-padded batches.

use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::error::{EpsvecError, Result};
use crate::model::blocks::BlockWeight;
use crate::model::config::{Activation, ModelConfig, QkNormKind, RopeScaling};
use crate::model::kernels::{self, Kernel};
use crate::model::kv_cache::KvCache;
use crate::model::placement::Placement;
use crate::model::weights::WeightSource;

/// Where a linear's weight lives, and so which kernel multiplies by it.
pub enum Storage {
    /// A tensor in the layout of its kernel (see `kernels`).
    Tensor(Tensor, Kernel),
    /// GGUF blocks, multiplied from the blocks (CPU float32).
    Blocks(Arc<BlockWeight>),
}

pub struct Linear {
    pub(crate) storage: Storage,
    pub(crate) bias: Option<Tensor>,
}

impl Linear {
    /// Loads several HF linears stacked along the output dimension, so one
    /// matmul serves them all (fused q/k/v, fused gate/up). On the CPU in
    /// float32, GGUF weights stay in their blocks when every part has them.
    fn load_fused(
        src: &dyn WeightSource,
        prefixes: &[(&str, i64)],
        in_dim: i64,
        bias: bool,
        at: Placement,
    ) -> Result<Self> {
        let mut biases = Vec::with_capacity(prefixes.len());
        if bias {
            for &(prefix, out_dim) in prefixes {
                biases.push(src.load(&format!("{prefix}.bias"), &[out_dim], at.kind, at.device)?);
            }
        }
        let bias = match biases.len() {
            0 => None,
            1 => Some(biases.remove(0)),
            _ => Some(Tensor::f_cat(&biases, 0)?),
        };
        if at.device == Device::Cpu && at.kind == Kind::Float {
            let mut blocks = Vec::with_capacity(prefixes.len());
            for &(prefix, out_dim) in prefixes {
                match src.load_blocks(&format!("{prefix}.weight"), &[out_dim, in_dim])? {
                    Some(b) => blocks.push(b),
                    None => break,
                }
            }
            if blocks.len() == prefixes.len() {
                return Ok(Self { storage: Storage::Blocks(Arc::new(BlockWeight::stack(blocks)?)), bias });
            }
        }
        let mut weights = Vec::with_capacity(prefixes.len());
        for &(prefix, out_dim) in prefixes {
            weights.push(src.load(&format!("{prefix}.weight"), &[out_dim, in_dim], at.kind, at.device)?);
        }
        let weight = if weights.len() == 1 { weights.remove(0) } else { Tensor::f_cat(&weights, 0)? };
        Self::new(weight, bias, at)
    }

    /// A linear with `weight` `[out, in]`, held in the layout of the kernel
    /// that is fastest for its shape on this machine (`kernels::choose`).
    pub fn new(weight: Tensor, bias: Option<Tensor>, at: Placement) -> Result<Self> {
        let size = weight.size();
        let kernel = kernels::choose(at, size[1], size[0])?;
        let (weight, bias) = kernels::layout(kernel, weight, bias)?;
        Ok(Self { storage: Storage::Tensor(weight, kernel), bias })
    }

    pub fn load(
        src: &dyn WeightSource,
        prefix: &str,
        out_dim: i64,
        in_dim: i64,
        bias: bool,
        at: Placement,
    ) -> Result<Self> {
        Self::load_fused(src, &[(prefix, out_dim)], in_dim, bias, at)
    }

    /// Whether the weight is GGUF blocks.
    pub fn holds_blocks(&self) -> bool {
        matches!(self.storage, Storage::Blocks(_))
    }

    /// The LM head that reuses the token embeddings.
    pub fn tied(embedding: &Embedding, at: Placement) -> Result<Self> {
        match embedding {
            Embedding::Tensor(t) => Self::new(t.shallow_clone(), None, at),
            Embedding::Blocks(b) => Ok(Self { storage: Storage::Blocks(b.clone()), bias: None }),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (weight, kernel) = match &self.storage {
            Storage::Tensor(w, Kernel::Dense) => return Ok(x.f_linear(w, self.bias.as_ref())?),
            Storage::Tensor(w, kernel) => (w, *kernel),
            Storage::Blocks(blocks) => {
                let mut out = blocks.forward(x)?;
                return Ok(match &self.bias {
                    Some(b) => out.f_add_(b)?,
                    None => out,
                });
            }
        };
        let mut shape = x.size();
        let in_dim = shape.pop().unwrap_or(0);
        let rows = x.f_reshape([-1, in_dim])?;
        let out = kernels::apply(kernel, &rows, weight, self.bias.as_ref())?;
        shape.push(out.size()[1]);
        Ok(out.f_reshape(shape.as_slice())?)
    }
}

/// Token embeddings: a `[vocab, hidden]` tensor, or GGUF blocks whose rows
/// are dequantized as tokens need them.
pub enum Embedding {
    Tensor(Tensor),
    Blocks(Arc<BlockWeight>),
}

impl Embedding {
    /// `model.embed_tokens.weight`, `[vocab, hidden]`: kept as blocks where
    /// the linears would be.
    pub fn load(src: &dyn WeightSource, vocab: i64, hidden: i64, at: Placement) -> Result<Self> {
        let name = "model.embed_tokens.weight";
        if at.device == Device::Cpu && at.kind == Kind::Float {
            if let Some(blocks) = src.load_blocks(name, &[vocab, hidden])? {
                return Ok(Self::Blocks(Arc::new(blocks)));
            }
        }
        Ok(Self::Tensor(src.load(name, &[vocab, hidden], at.kind, at.device)?))
    }

    /// Whether the rows come out as float32 on the CPU.
    pub fn is_cpu_float(&self) -> bool {
        match self {
            Self::Tensor(t) => t.device() == Device::Cpu && t.kind() == Kind::Float,
            Self::Blocks(_) => true,
        }
    }

    /// The same embeddings, shared.
    pub fn share(&self) -> Self {
        match self {
            Self::Tensor(t) => Self::Tensor(t.shallow_clone()),
            Self::Blocks(b) => Self::Blocks(b.clone()),
        }
    }

    /// The embeddings of `ids` (any shape): `[..ids, hidden]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let blocks = match self {
            Self::Tensor(t) => return Ok(Tensor::f_embedding(t, ids, -1, false, false)?),
            Self::Blocks(b) => b,
        };
        let flat = Vec::<i64>::try_from(&ids.f_reshape([-1])?)?;
        let mut rows = vec![0.0f32; flat.len() * blocks.in_dim()];
        self.lookup(&flat, &mut rows)?;
        let mut shape = ids.size();
        shape.push(blocks.in_dim() as i64);
        Ok(Tensor::f_from_slice(&rows)?.f_reshape(shape.as_slice())?)
    }

    /// The float32 embeddings of `ids` into `out` (`[ids.len(), hidden]`).
    pub fn lookup(&self, ids: &[i64], out: &mut [f32]) -> Result<()> {
        let (vocab, hidden) = match self {
            Self::Tensor(t) => (t.size()[0], t.size()[1]),
            Self::Blocks(b) => (b.out_dim() as i64, b.in_dim() as i64),
        };
        // The id itself stays out of the message: it may come from a private record.
        if ids.iter().any(|&id| !(0..vocab).contains(&id)) {
            return Err(EpsvecError::InvalidInput(format!("a token id is outside the vocabulary of {vocab}")));
        }
        for (&id, out) in ids.iter().zip(out.chunks_exact_mut(hidden as usize)) {
            match self {
                Self::Tensor(t) => t.get(id).f_to_kind(Kind::Float)?.f_copy_data(out, hidden as usize)?,
                Self::Blocks(b) => b.dequantize_rows(id as usize..id as usize + 1, out),
            }
        }
        Ok(())
    }
}

/// How an RMSNorm applies its weight (HF's families differ in bfloat16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormStyle {
    /// `LlamaRMSNorm`: normalise in float32, cast, then scale by `w`.
    Llama,
    /// `Olmo2RMSNorm`: scale by `w` in float32, then cast.
    ScaleInF32,
    /// `Gemma2/3RMSNorm`: scale by `1 + w` in float32, then cast.
    OnePlusWeight,
}

pub struct RmsNorm {
    /// In float32 every style multiplies by this (Gemma's `1 + w` is folded in at load).
    pub(crate) weight: Tensor,
    pub(crate) eps: f64,
    style: NormStyle,
}

impl RmsNorm {
    pub fn load(
        src: &dyn WeightSource,
        name: &str,
        dim: i64,
        eps: f64,
        style: NormStyle,
        at: Placement,
    ) -> Result<Self> {
        let mut weight = src.load(name, &[dim], at.kind, at.device)?;
        if style == NormStyle::OnePlusWeight && at.kind == Kind::Float {
            weight = weight.f_add_scalar(1.0)?; // exact in float32, so fold it in once
        }
        Ok(Self { weight, eps, style })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let kind = x.kind();
        if kind == Kind::Float {
            // One fused kernel; the same arithmetic as below in float32.
            let dim = self.weight.size();
            return Ok(x.f_rms_norm(dim.as_slice(), Some(&self.weight), self.eps)?);
        }
        let x32 = x.f_to_kind(Kind::Float)?;
        let variance = x32.f_pow_tensor_scalar(2)?.f_mean_dim(-1, true, Kind::Float)?;
        let normed = x32.f_mul(&variance.f_add_scalar(self.eps)?.f_rsqrt()?)?;
        Ok(match self.style {
            NormStyle::Llama => self.weight.f_mul(&normed.f_to_kind(kind)?)?,
            NormStyle::ScaleInF32 => normed.f_mul(&self.weight.f_to_kind(Kind::Float)?)?.f_to_kind(kind)?,
            NormStyle::OnePlusWeight => {
                normed.f_mul(&self.weight.f_to_kind(Kind::Float)?.f_add_scalar(1.0)?)?.f_to_kind(kind)?
            }
        })
    }
}

/// Per-head or whole-projection RMSNorm of queries and keys.
pub enum QkNorm {
    None,
    /// Over each head (Qwen3, Gemma 3).
    PerHead(RmsNorm, RmsNorm),
    /// Over the whole q and k projections, before splitting into heads (OLMo 2/3).
    FullWidth(RmsNorm, RmsNorm),
}

pub struct Attention {
    pub(crate) qkv: Linear,
    pub(crate) o_proj: Linear,
    pub(crate) qk_norm: QkNorm,
    pub(crate) num_heads: i64,
    pub(crate) num_kv_heads: i64,
    pub(crate) head_dim: i64,
    /// Score scale when not `1/sqrt(head_dim)` (Gemma's `query_pre_attn_scalar`).
    pub(crate) scale: Option<f64>,
    /// `cap * tanh(scores / cap)` before the mask (Gemma 2).
    pub(crate) softcap: Option<f64>,
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
    /// HF: freqs in float32 from `inv_freq` and the positions, then cos/sin cast to `kind`.
    pub fn new(inv_freq: &Tensor, positions: &Tensor, kind: Kind) -> Result<Self> {
        let freqs = positions.f_to_kind(Kind::Float)?.f_unsqueeze(-1)?.f_mul(inv_freq)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        Ok(Rope {
            cos: emb.f_cos()?.f_to_kind(kind)?.f_unsqueeze(1)?,
            sin: emb.f_sin()?.f_to_kind(kind)?.f_unsqueeze(1)?,
        })
    }

    /// Rotates `x`; with float32 tables (OLMo) the rotation runs in float32
    /// and the result is cast back, as HF does.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let out = x.f_mul(&self.cos)?.f_add(&rotate_half(x)?.f_mul(&self.sin)?)?;
        Ok(if out.kind() == x.kind() { out } else { out.f_to_kind(x.kind())? })
    }
}

impl Attention {
    /// The HF attention under `prefix` (`q_proj`, `k_proj`, `v_proj`, `o_proj`,
    /// and `q_norm`/`k_norm` as `cfg.qk_norm` says).
    pub fn load(
        src: &dyn WeightSource,
        prefix: &str,
        cfg: &ModelConfig,
        style: NormStyle,
        at: Placement,
    ) -> Result<Self> {
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
        let norm = |name: &str, dim: i64| {
            RmsNorm::load(src, &format!("{prefix}.{name}.weight"), dim, cfg.rms_norm_eps, style, at)
        };
        let qk_norm = match cfg.qk_norm {
            QkNormKind::None => QkNorm::None,
            QkNormKind::PerHead => QkNorm::PerHead(norm("q_norm", cfg.head_dim)?, norm("k_norm", cfg.head_dim)?),
            QkNormKind::FullWidth => QkNorm::FullWidth(norm("q_norm", q_dim)?, norm("k_norm", kv_dim)?),
        };
        Ok(Self {
            qkv,
            o_proj: Linear::load(src, &format!("{prefix}.o_proj"), h, q_dim, cfg.o_bias, at)?,
            qk_norm,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
            scale: cfg.query_pre_attn_scalar.map(|s| s.powf(-0.5)),
            softcap: cfg.attn_logit_softcapping,
        })
    }

    /// `x`: `[batch, seq, hidden]`; `mask`: boolean `[batch, 1, seq, keys]`
    /// where keys are the cached positions followed by the new ones.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        mask: &Tensor,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Result<Tensor> {
        let (b, t) = (x.size()[0], x.size()[1]);
        let q_dim = self.num_heads * self.head_dim;
        let kv_dim = self.num_kv_heads * self.head_dim;
        let qkv = self.qkv.forward(x)?;
        let (mut q, mut k) = (qkv.f_narrow(-1, 0, q_dim)?, qkv.f_narrow(-1, q_dim, kv_dim)?);
        if let QkNorm::FullWidth(qn, kn) = &self.qk_norm {
            (q, k) = (qn.forward(&q)?, kn.forward(&k)?);
        }
        let heads = |part: &Tensor, n: i64, norm: Option<&RmsNorm>| -> Result<Tensor> {
            let mut part = part.f_reshape([b, t, n, self.head_dim])?;
            if let Some(norm) = norm {
                part = norm.forward(&part)?;
            }
            Ok(part.f_transpose(1, 2)?)
        };
        let (qn, kn) = match &self.qk_norm {
            QkNorm::PerHead(qn, kn) => (Some(qn), Some(kn)),
            _ => (None, None),
        };
        let q = rope.apply(&heads(&q, self.num_heads, qn)?)?;
        let k = rope.apply(&heads(&k, self.num_kv_heads, kn)?)?;
        let v = heads(&qkv.f_narrow(-1, q_dim + kv_dim, kv_dim)?, self.num_kv_heads, None)?;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, &v)?,
            None => (k, v),
        };
        let gqa = self.num_heads != self.num_kv_heads;
        let out = match self.softcap {
            None => Tensor::f_scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, self.scale, gqa)?,
            Some(cap) => self.softcapped(&q, &k, &v, mask, cap)?,
        };
        let out = out.f_transpose(1, 2)?.f_reshape([b, t, q_dim])?;
        self.o_proj.forward(&out)
    }

    /// HF's eager attention with logit soft-capping: scores scaled, capped,
    /// masked, softmax in float32.
    fn softcapped(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, cap: f64) -> Result<Tensor> {
        let groups = self.num_heads / self.num_kv_heads;
        let (k, v) =
            (k.f_repeat_interleave_self_int(groups, 1, None)?, v.f_repeat_interleave_self_int(groups, 1, None)?);
        let scale = self.scale.unwrap_or((self.head_dim as f64).powf(-0.5));
        let scores = q.f_matmul(&k.f_transpose(2, 3)?)?.f_mul_scalar(scale)?;
        let scores = scores.f_div_scalar(cap)?.f_tanh()?.f_mul_scalar(cap)?;
        let scores = scores.f_masked_fill(&mask.f_logical_not()?, f64::NEG_INFINITY)?;
        let weights = scores.f_softmax(-1, Kind::Float)?.f_to_kind(q.kind())?;
        Ok(weights.f_matmul(&v)?)
    }
}

pub struct Mlp {
    pub(crate) gate_up: Linear,
    pub(crate) down: Linear,
    pub(crate) intermediate: i64,
    pub(crate) act: Activation,
}

impl Mlp {
    pub fn load(src: &dyn WeightSource, prefix: &str, cfg: &ModelConfig, at: Placement) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let gate_up = Linear::load_fused(
            src,
            &[(&format!("{prefix}.gate_proj"), i), (&format!("{prefix}.up_proj"), i)],
            h,
            cfg.mlp_bias,
            at,
        )?;
        let down = Linear::load(src, &format!("{prefix}.down_proj"), h, i, cfg.mlp_bias, at)?;
        Ok(Self { gate_up, down, intermediate: i, act: cfg.activation })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate_up = self.gate_up.forward(x)?;
        let gate = gate_up.f_narrow(-1, 0, self.intermediate)?;
        let up = gate_up.f_narrow(-1, self.intermediate, self.intermediate)?;
        let gate = match self.act {
            Activation::Silu => gate.f_silu()?,
            Activation::GeluTanh => gate.f_gelu("tanh")?,
        };
        self.down.forward(&gate.f_mul(&up)?)
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

/// HF's rotary inverse frequencies (float32), with llama3 scaling or GGUF
/// per-frequency factors applied.
pub fn rope_inv_freq(head_dim: i64, theta: f64, scaling: &RopeScaling, device: Device) -> Result<Tensor> {
    let dim = head_dim;
    let exponents = Tensor::f_arange_start_step(0, dim, 2, (Kind::Int64, Device::Cpu))?
        .f_to_kind(Kind::Float)?
        .f_div_scalar(dim as f64)?;
    let base = Tensor::f_pow_scalar(theta, &exponents)?.f_to_kind(Kind::Float)?;
    let inv_freq = base.f_reciprocal()?;
    let inv_freq = match scaling {
        RopeScaling::None => inv_freq,
        &RopeScaling::Linear(factor) => inv_freq.f_div_scalar(factor)?,
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
