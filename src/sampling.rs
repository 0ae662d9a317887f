//! Sampling parameters (HF/vLLM names) and the logits processor that turns
//! one step's logits into next tokens. Processing follows transformers'
//! order: repetition penalty, temperature, top-k, top-p, min-p.
//!
//! Draws use one ChaCha20 stream per prompt, seeded from `seed` and the
//! prompt's index, and inverse-CDF sampling on the device: the same seed
//! gives the same text whatever the batch composition, and torch's global
//! generator (shared with the user's torch) is never touched.

use rand::rngs::{ChaCha20Rng, SysRng};
use rand::{RngExt, SeedableRng, TryRng};
use tch::{Kind, Tensor};

use crate::error::{EpsvecError, Result};

/// How to pick each next token.
#[derive(Clone, Debug)]
pub struct SamplingParams {
    /// Most tokens to generate per prompt.
    pub max_new_tokens: usize,
    /// End-of-sequence tokens are suppressed until this many were generated.
    pub min_new_tokens: usize,
    /// Softmax temperature; 0 means greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens with this much mass (1 = off).
    pub top_p: f64,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Drop tokens less likely than `min_p` times the most likely one (0 = off).
    pub min_p: f64,
    /// Penalise tokens already in the prompt or output (1 = off), as in CTRL/transformers.
    pub repetition_penalty: f64,
    /// Seed of the per-prompt random streams; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            min_new_tokens: 0,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: None,
        }
    }
}

fn invalid(msg: String) -> Result<()> {
    Err(EpsvecError::InvalidInput(msg))
}

impl SamplingParams {
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens == 0 {
            return invalid("max_new_tokens must be at least 1, got 0".into());
        }
        if self.min_new_tokens > self.max_new_tokens {
            return invalid(format!(
                "min_new_tokens ({}) must not exceed max_new_tokens ({})",
                self.min_new_tokens, self.max_new_tokens
            ));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return invalid(format!("temperature must be a finite number >= 0 (0 = greedy), got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return invalid(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(self.min_p >= 0.0 && self.min_p < 1.0) {
            return invalid(format!("min_p must be in [0, 1), got {}", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return invalid(format!("repetition_penalty must be a finite number > 0, got {}", self.repetition_penalty));
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// Picks next tokens for a batch, one random stream per prompt.
pub struct Sampler {
    params: SamplingParams,
    streams: Vec<ChaCha20Rng>,
}

impl Sampler {
    /// `prompt_indices` name the prompts of the batch rows (for their streams).
    pub fn new(params: &SamplingParams, prompt_indices: &[usize]) -> Result<Self> {
        params.validate()?;
        let seed = match params.seed {
            Some(seed) => seed,
            None => {
                let mut bytes = [0u8; 8];
                SysRng.try_fill_bytes(&mut bytes).map_err(|e| EpsvecError::Device(format!("no OS entropy: {e}")))?;
                u64::from_le_bytes(bytes)
            }
        };
        let streams = prompt_indices
            .iter()
            .map(|&i| {
                let mut rng = ChaCha20Rng::seed_from_u64(seed);
                rng.set_stream(i as u64);
                rng
            })
            .collect();
        Ok(Self { params: params.clone(), streams })
    }

    /// Keeps the streams of the rows still generating.
    pub fn keep_rows(&mut self, keep: &[usize]) {
        let mut streams = std::mem::take(&mut self.streams);
        self.streams =
            keep.iter().map(|&r| std::mem::replace(&mut streams[r], ChaCha20Rng::seed_from_u64(0))).collect();
    }

    /// Applies penalty, temperature and truncation to `[batch, vocab]`
    /// float32 logits. `seen` marks tokens already in each row (bool).
    pub fn process(&self, logits: &Tensor, seen: Option<&Tensor>) -> Result<Tensor> {
        let p = &self.params;
        let mut logits = logits.f_to_kind(Kind::Float)?;
        if let (Some(seen), true) = (seen, p.repetition_penalty != 1.0) {
            let penalised = logits.f_lt(0.0)?.f_where_self(
                &logits.f_mul_scalar(p.repetition_penalty)?,
                &logits.f_div_scalar(p.repetition_penalty)?,
            )?;
            logits = penalised.f_where_self(seen, &logits)?;
        }
        if p.is_greedy() {
            return Ok(logits);
        }
        if p.temperature != 1.0 {
            logits = logits.f_div_scalar(p.temperature)?;
        }
        let vocab = logits.size()[1];
        if p.top_k > 0 && (p.top_k as i64) < vocab {
            let (top, _) = logits.f_topk(p.top_k as i64, -1, true, true)?;
            let threshold = top.f_narrow(-1, p.top_k as i64 - 1, 1)?;
            logits = logits.f_masked_fill(&logits.f_lt_tensor(&threshold)?, f64::NEG_INFINITY)?;
        }
        if p.top_p < 1.0 {
            // transformers' rule: drop the low tail whose mass is <= 1 - top_p,
            // always keeping the most likely token.
            let (sorted, order) = logits.f_sort(-1, false)?;
            let cumulative = sorted.f_softmax(-1, Kind::Float)?.f_cumsum(-1, Kind::Float)?;
            let not_top = Tensor::f_arange(vocab, (Kind::Int64, logits.device()))?.f_lt(vocab - 1)?;
            let drop_sorted = cumulative.f_le(1.0 - p.top_p)?.f_logical_and(&not_top)?;
            let drop = drop_sorted.f_scatter(-1, &order, &drop_sorted)?;
            logits = logits.f_masked_fill(&drop, f64::NEG_INFINITY)?;
        }
        if p.min_p > 0.0 {
            let probs = logits.f_softmax(-1, Kind::Float)?;
            let (max, _) = probs.f_max_dim(-1, true)?;
            logits = logits.f_masked_fill(&probs.f_lt_tensor(&max.f_mul_scalar(p.min_p)?)?, f64::NEG_INFINITY)?;
        }
        Ok(logits)
    }

    /// Draws one token per row from processed logits: argmax when greedy,
    /// else inverse-CDF sampling with a uniform from the row's stream.
    pub fn sample(&mut self, processed: &Tensor) -> Result<Tensor> {
        if self.params.is_greedy() {
            return Ok(processed.f_argmax(-1, false)?);
        }
        let device = processed.device();
        let cumulative = processed.f_softmax(-1, Kind::Float)?.f_cumsum(-1, Kind::Float)?;
        let vocab = cumulative.size()[1];
        // u in (0, 1]: a zero-probability token is never chosen.
        let uniforms: Vec<f32> = self.streams.iter_mut().map(|rng| 1.0 - rng.random::<f32>()).collect();
        let u = Tensor::f_from_slice(&uniforms)?.f_to_device(device)?.f_unsqueeze(-1)?;
        let target = u.f_mul(&cumulative.f_narrow(-1, vocab - 1, 1)?)?;
        let index = target.f_searchsorted(&cumulative, false, false, "left", None::<Tensor>)?;
        Ok(index.f_clamp_max(vocab - 1)?.f_squeeze_dim(-1)?.f_to_device(device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn params() -> SamplingParams {
        SamplingParams { seed: Some(7), ..Default::default() }
    }

    #[test]
    fn validation_quotes_the_bad_value() {
        for (p, needle) in [
            (SamplingParams { temperature: -0.5, ..params() }, "-0.5"),
            (SamplingParams { top_p: 1.5, ..params() }, "1.5"),
            (SamplingParams { min_p: 1.0, ..params() }, "min_p"),
            (SamplingParams { repetition_penalty: 0.0, ..params() }, "repetition_penalty"),
            (SamplingParams { max_new_tokens: 0, ..params() }, "max_new_tokens"),
        ] {
            let msg = p.validate().unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn top_k_and_top_p_truncate() {
        let logits = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0]).log_softmax(-1, Kind::Float).reshape([1, 4]);
        let k = Sampler::new(&SamplingParams { top_k: 2, ..params() }, &[0]).unwrap();
        let out: Vec<f32> = Vec::try_from(k.process(&logits, None).unwrap().flatten(0, 1)).unwrap();
        assert!(out[0].is_infinite() && out[1].is_infinite() && out[2].is_finite() && out[3].is_finite());
        // probs ~ 0.032, 0.087, 0.237, 0.644: top_p 0.8 keeps the last two.
        let p = Sampler::new(&SamplingParams { top_p: 0.8, ..params() }, &[0]).unwrap();
        let out: Vec<f32> = Vec::try_from(p.process(&logits, None).unwrap().flatten(0, 1)).unwrap();
        assert!(out[0].is_infinite() && out[1].is_infinite() && out[2].is_finite() && out[3].is_finite());
    }

    #[test]
    fn streams_do_not_depend_on_batch_composition() {
        let logits = Tensor::zeros([1, 50], (Kind::Float, Device::Cpu));
        let mut alone = Sampler::new(&params(), &[3]).unwrap();
        let mut batched = Sampler::new(&params(), &[0, 3]).unwrap();
        let both = Tensor::cat(&[&logits, &logits], 0);
        for _ in 0..5 {
            let a: Vec<i64> = Vec::try_from(alone.sample(&logits).unwrap()).unwrap();
            let b: Vec<i64> = Vec::try_from(batched.sample(&both).unwrap()).unwrap();
            assert_eq!(a[0], b[1]);
        }
    }
}
