//! The decoder block of every family, from one description: which RMSNorms
//! sit before and after the attention and the MLP, and in which HF style.
//!
//! - Llama family (Llama 2/3, Mistral, Qwen2/3, SmolLM): pre-norm, a norm
//!   before the attention and one before the MLP (`LlamaRMSNorm`).
//! - Gemma 2/3: "sandwich" norms before and after both, `(1 + w)` RMSNorm,
//!   GELU-tanh MLP. Gemma-wide pieces (scaled embeddings, soft-capping,
//!   `query_pre_attn_scalar`, per-layer-type RoPE, q/k norms) come from the
//!   config through the shared layers.
//! - OLMo 2/3: post-norm, each sublayer's output normalised before the
//!   residual add, no input norm (`Olmo2RMSNorm`, q/k norms over the whole
//!   projections).

use tch::Tensor;

use crate::error::Result;
use crate::model::config::{Family, ModelConfig};
use crate::model::kv_cache::KvCache;
use crate::model::layers::{Attention, Linear, Mlp, NormStyle, RmsNorm, Rope};
use crate::model::placement::Placement;
use crate::model::weights::WeightSource;

/// A family's block norms: HF names before/after the attention and the MLP.
pub struct Layout {
    pub attention_in: Option<&'static str>,
    pub attention_out: Option<&'static str>,
    pub mlp_in: Option<&'static str>,
    pub mlp_out: Option<&'static str>,
    pub style: NormStyle,
}

impl Layout {
    pub fn of(family: Family) -> Self {
        match family {
            Family::Llama => Self {
                attention_in: Some("input_layernorm"),
                attention_out: None,
                mlp_in: Some("post_attention_layernorm"),
                mlp_out: None,
                style: NormStyle::Llama,
            },
            Family::Gemma => Self {
                attention_in: Some("input_layernorm"),
                attention_out: Some("post_attention_layernorm"),
                mlp_in: Some("pre_feedforward_layernorm"),
                mlp_out: Some("post_feedforward_layernorm"),
                style: NormStyle::OnePlusWeight,
            },
            Family::Olmo => Self {
                attention_in: None,
                attention_out: Some("post_attention_layernorm"),
                mlp_in: None,
                mlp_out: Some("post_feedforward_layernorm"),
                style: NormStyle::ScaleInF32,
            },
        }
    }
}

/// `x + out(attention(in(x)))`, then `h + out(mlp(in(h)))`, each norm where
/// the family has one.
pub struct Block {
    pub(crate) attention_in: Option<RmsNorm>,
    pub(crate) attention: Attention,
    pub(crate) attention_out: Option<RmsNorm>,
    pub(crate) mlp_in: Option<RmsNorm>,
    pub(crate) mlp: Mlp,
    pub(crate) mlp_out: Option<RmsNorm>,
}

impl Block {
    pub fn load(src: &dyn WeightSource, layer: usize, cfg: &ModelConfig, at: Placement) -> Result<Self> {
        let prefix = format!("model.layers.{layer}");
        let layout = Layout::of(cfg.architecture.family());
        let norm = |name: Option<&str>| {
            name.map(|name| {
                let name = format!("{prefix}.{name}.weight");
                RmsNorm::load(src, &name, cfg.hidden_size, cfg.rms_norm_eps, layout.style, at)
            })
            .transpose()
        };
        Ok(Self {
            attention_in: norm(layout.attention_in)?,
            attention: Attention::load(src, &format!("{prefix}.self_attn"), cfg, layout.style, at)?,
            attention_out: norm(layout.attention_out)?,
            mlp_in: norm(layout.mlp_in)?,
            mlp: Mlp::load(src, &format!("{prefix}.mlp"), cfg, at)?,
            mlp_out: norm(layout.mlp_out)?,
        })
    }

    /// The block's linears.
    pub fn linears(&self) -> [&Linear; 4] {
        [&self.attention.qkv, &self.attention.o_proj, &self.mlp.gate_up, &self.mlp.down]
    }

    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        mask: &Tensor,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Result<Tensor> {
        let attended = self.attention.forward(&normed(&self.attention_in, x)?, rope, mask, cache)?;
        let h = x.f_add(&normed(&self.attention_out, &attended)?)?;
        let fed = self.mlp.forward(&normed(&self.mlp_in, &h)?)?;
        Ok(h.f_add(&normed(&self.mlp_out, &fed)?)?)
    }
}

fn normed(norm: &Option<RmsNorm>, x: &Tensor) -> Result<Tensor> {
    match norm {
        Some(norm) => norm.forward(x),
        None => Ok(x.shallow_clone()),
    }
}
