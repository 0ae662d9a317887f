//! The Gemma 2 / Gemma 3 block: "sandwich" norms (before and after both
//! attention and MLP), `(1 + w)` RMSNorm, GELU-tanh MLP. Gemma-wide pieces
//! (scaled embeddings, soft-capping, `query_pre_attn_scalar`, per-layer-type
//! RoPE, q/k norms) come from the config through the shared layers.

use tch::Tensor;

use crate::error::Result;
use crate::model::config::ModelConfig;
use crate::model::kv_cache::KvCache;
use crate::model::layers::{Attention, Mlp, NormStyle, RmsNorm, Rope};
use crate::model::placement::Placement;
use crate::model::weights::WeightSource;

pub struct Block {
    input_norm: RmsNorm,
    attention: Attention,
    post_attention_norm: RmsNorm,
    pre_feedforward_norm: RmsNorm,
    mlp: Mlp,
    post_feedforward_norm: RmsNorm,
}

impl Block {
    pub fn load(src: &dyn WeightSource, prefix: &str, cfg: &ModelConfig, at: Placement) -> Result<Self> {
        let norm = |name: &str| {
            let name = format!("{prefix}.{name}.weight");
            RmsNorm::load(src, &name, cfg.hidden_size, cfg.rms_norm_eps, NormStyle::OnePlusWeight, at)
        };
        Ok(Self {
            input_norm: norm("input_layernorm")?,
            attention: Attention::load(src, &format!("{prefix}.self_attn"), cfg, NormStyle::OnePlusWeight, at)?,
            post_attention_norm: norm("post_attention_layernorm")?,
            pre_feedforward_norm: norm("pre_feedforward_layernorm")?,
            mlp: Mlp::load(src, &format!("{prefix}.mlp"), cfg, at)?,
            post_feedforward_norm: norm("post_feedforward_layernorm")?,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        mask: &Tensor,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Result<Tensor> {
        let attended = self.attention.forward(&self.input_norm.forward(x)?, rope, mask, cache)?;
        let h = x.f_add(&self.post_attention_norm.forward(&attended)?)?;
        let fed = self.mlp.forward(&self.pre_feedforward_norm.forward(&h)?)?;
        Ok(h.f_add(&self.post_feedforward_norm.forward(&fed)?)?)
    }
}
