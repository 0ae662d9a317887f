//! The OLMo 2 / OLMo 3 block: post-norm (each sublayer's output is
//! normalised before the residual add, no input norm), `Olmo2RMSNorm`, q/k
//! norms over the whole projections.

use tch::Tensor;

use crate::error::Result;
use crate::model::config::ModelConfig;
use crate::model::kv_cache::KvCache;
use crate::model::layers::{Attention, Mlp, NormStyle, RmsNorm, Rope};
use crate::model::placement::Placement;
use crate::model::weights::WeightSource;

pub struct Block {
    attention: Attention,
    post_attention_norm: RmsNorm,
    mlp: Mlp,
    post_feedforward_norm: RmsNorm,
}

impl Block {
    pub fn load(src: &dyn WeightSource, prefix: &str, cfg: &ModelConfig, at: Placement) -> Result<Self> {
        let norm = |name: &str| {
            let name = format!("{prefix}.{name}.weight");
            RmsNorm::load(src, &name, cfg.hidden_size, cfg.rms_norm_eps, NormStyle::ScaleInF32, at)
        };
        Ok(Self {
            attention: Attention::load(src, &format!("{prefix}.self_attn"), cfg, NormStyle::ScaleInF32, at)?,
            post_attention_norm: norm("post_attention_layernorm")?,
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
        let h = x.f_add(&self.post_attention_norm.forward(&self.attention.forward(x, rope, mask, cache)?)?)?;
        Ok(h.f_add(&self.post_feedforward_norm.forward(&self.mlp.forward(&h)?)?)?)
    }
}
