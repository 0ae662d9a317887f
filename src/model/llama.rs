//! The Llama-family block (Llama 2/3, Mistral, Qwen2, Qwen3, SmolLM):
//! pre-norm attention and MLP, `LlamaRMSNorm`.

use tch::Tensor;

use crate::error::Result;
use crate::model::config::ModelConfig;
use crate::model::kv_cache::KvCache;
use crate::model::layers::{Attention, Mlp, NormStyle, RmsNorm, Rope};
use crate::model::placement::Placement;
use crate::model::weights::WeightSource;

pub struct Block {
    pub(crate) input_norm: RmsNorm,
    pub(crate) attention: Attention,
    pub(crate) post_norm: RmsNorm,
    pub(crate) mlp: Mlp,
}

impl Block {
    pub fn load(src: &dyn WeightSource, prefix: &str, cfg: &ModelConfig, at: Placement) -> Result<Self> {
        let norm = |name: &str| {
            RmsNorm::load(
                src,
                &format!("{prefix}.{name}.weight"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
                NormStyle::Llama,
                at,
            )
        };
        Ok(Self {
            input_norm: norm("input_layernorm")?,
            attention: Attention::load(src, &format!("{prefix}.self_attn"), cfg, NormStyle::Llama, at)?,
            post_norm: norm("post_attention_layernorm")?,
            mlp: Mlp::load(src, &format!("{prefix}.mlp"), cfg, at)?,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        mask: &Tensor,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Result<Tensor> {
        let h = x.f_add(&self.attention.forward(&self.input_norm.forward(x)?, rope, mask, cache)?)?;
        Ok(h.f_add(&self.mlp.forward(&self.post_norm.forward(&h)?)?)?)
    }
}
