//! The decoder: embeddings, one block per layer (of the checkpoint's family),
//! the final norm and the LM head, run with hooks on the residual stream.

use tch::{Kind, Tensor};

use crate::error::{EpsvecError, Result};
use crate::hooks::BlockHook;
use crate::model::block::{Block, Layout};
use crate::model::config::{Family, ModelConfig, RopeScaling};
use crate::model::decode_step::DecodeStep;
use crate::model::kv_cache::KvCache;
use crate::model::layers::{attention_mask, rope_inv_freq, Batch, Embedding, Linear, RmsNorm, Rope};
use crate::model::placement::Placement;
use crate::model::weights::WeightSource;

/// The loaded decoder.
pub struct Decoder {
    pub config: ModelConfig,
    pub placement: Placement,
    embed_tokens: Embedding,
    /// Gemma multiplies embeddings by `sqrt(hidden)` (in the model dtype).
    embed_scale: Option<Tensor>,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    /// `[head_dim / 2]` float32 rotary frequencies: full-attention layers,
    /// then (when the config has its own) sliding-window layers.
    inv_freq: Vec<Tensor>,
    /// The plain-Rust decoding step, where the model's weights allow it.
    decode_step: Option<DecodeStep>,
}

impl Decoder {
    pub fn load(src: &dyn WeightSource, config: ModelConfig, at: Placement) -> Result<Self> {
        let (v, h) = (config.vocab_size, config.hidden_size);
        let family = config.architecture.family();
        let embed_tokens = Embedding::load(src, v, h, at)?;
        let lm_head = if config.tie_word_embeddings || !src.contains("lm_head.weight") {
            Linear::tied(&embed_tokens, at)?
        } else {
            Linear::load(src, "lm_head", v, h, false, at)?
        };
        let layers = (0..config.num_layers).map(|l| Block::load(src, l, &config, at)).collect::<Result<Vec<_>>>()?;
        let style = Layout::of(family).style;
        let norm = RmsNorm::load(src, "model.norm.weight", h, config.rms_norm_eps, style, at)?;
        let embed_scale = match family {
            Family::Gemma => {
                Some(Tensor::f_from_slice(&[(h as f64).sqrt() as f32])?.f_to_kind(at.kind)?.f_to_device(at.device)?)
            }
            _ => None,
        };
        let mut inv_freq = vec![rope_inv_freq(config.head_dim, config.rope_theta, &config.rope_scaling, at.device)?];
        if let Some(theta) = config.sliding_rope_theta {
            inv_freq.push(rope_inv_freq(config.head_dim, theta, &RopeScaling::None, at.device)?);
        }
        let decode_step = DecodeStep::new(&config, &layers, &embed_tokens, &norm, &lm_head, &inv_freq)?;
        Ok(Self { config, placement: at, embed_tokens, embed_scale, layers, norm, lm_head, inv_freq, decode_step })
    }

    /// The plain-Rust decoding step (float32 models on the CPU), or `None`
    /// where only the libtorch path runs.
    pub fn decode_step(&self) -> Option<&DecodeStep> {
        self.decode_step.as_ref()
    }

    /// Whether some weights are GGUF blocks (the embeddings or a linear).
    pub fn holds_blocks(&self) -> bool {
        matches!(self.embed_tokens, Embedding::Blocks(_))
            || self.lm_head.holds_blocks()
            || self.layers.iter().any(|b| b.linears().iter().any(|l| l.holds_blocks()))
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
        // OLMo's rotary tables stay float32 (HF does not cast them to the activations' dtype).
        let kind = if self.config.architecture.family() == Family::Olmo { Kind::Float } else { self.placement.kind };
        let ropes = self.inv_freq.iter().map(|f| Rope::new(f, &batch.positions, kind)).collect::<Result<Vec<_>>>()?;
        let mut masks: Vec<(Option<i64>, Tensor)> = Vec::new();
        let mut hidden = self.embed_tokens.forward(&batch.input_ids)?;
        if let Some(scale) = &self.embed_scale {
            hidden = hidden.f_mul(scale)?;
        }
        for (l, block) in self.layers[..=last].iter().enumerate() {
            let window = self.config.sliding_window[l];
            if !masks.iter().any(|(w, _)| *w == window) {
                masks.push((window, attention_mask(&batch.attention_mask, queries, window)?));
            }
            let mask = &masks.iter().find(|(w, _)| *w == window).expect("just inserted").1;
            hidden = block.forward(
                &hidden,
                &ropes[self.config.rope_table(l)],
                mask,
                cache.as_deref_mut().map(|c| (c, l)),
            )?;
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

    /// Vocabulary logits for final-normed hidden states (soft-capped as Gemma 2 does).
    pub fn logits(&self, normed: &Tensor) -> Result<Tensor> {
        let logits = self.lm_head.forward(normed)?;
        match self.config.final_logit_softcapping {
            None => Ok(logits),
            Some(cap) => Ok(logits.f_div_scalar(cap)?.f_tanh()?.f_mul_scalar(cap)?),
        }
    }
}
