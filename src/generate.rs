//! Prefill + incremental decoding over a KV cache for one batch of prompts,
//! with per-row stopping. Rows that finish leave the batch (their cache rows
//! are dropped), so they stop costing compute. Decoding steps run the
//! model's plain-Rust step where it has one (`model::decode_step`).

use tch::{Device, Kind, Tensor};

use crate::engine::Engine;
use crate::error::{EpsvecError, Result};
use crate::hooks::{BlockHook, Positions, Steering};
use crate::model::kv_cache::KvCache;
use crate::model::layers::Batch;
use crate::sampling::{Sampler, SamplingParams};

/// Steering for a batch: one vector per row and steered layer.
pub struct SteerBatch {
    pub layers: Vec<usize>,
    /// `[rows, layers, hidden]` float32, row-major, strength applied.
    pub vectors: Vec<f32>,
    pub positions: Positions,
}

/// How long one prompt's continuation should be, in new tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowLength {
    /// Before it, nothing that would end the row is sampled (`early_end_tokens`).
    pub min_new: usize,
    /// From it on, the row ends with its first token that closes a sentence
    /// (`sentence_end_tokens`).
    pub end_at_sentence_after: Option<usize>,
}

impl SteerBatch {
    /// Whether every row is steered the same (so rows can share a prefill).
    fn rows_equal(&self, hidden: usize) -> bool {
        let row = (self.layers.len() * hidden).max(1);
        self.vectors.chunks(row).all(|r| r == &self.vectors[..row.min(self.vectors.len())])
    }

    fn first_row(&self, hidden: usize) -> SteerBatch {
        let row = (self.layers.len() * hidden).min(self.vectors.len());
        SteerBatch { layers: self.layers.clone(), vectors: self.vectors[..row].to_vec(), positions: self.positions }
    }
}

/// Why a row stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token (not included in the output).
    Eos,
    /// A stop string appeared (the text is cut before it).
    Stop,
    /// `max_new_tokens` was reached.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

pub struct Generation {
    pub ids: Vec<u32>,
    pub text: String,
    pub finish: Finish,
}

/// The rows of a batch still generating, and everything indexed by them.
struct Active {
    /// Batch row (index into the prompts) of each current row.
    rows: Vec<usize>,
    key_mask: Tensor,
    positions: Tensor,
    seen: Option<Tensor>,
}

impl Engine {
    /// Generates continuations of `prompts` (token ids). `streams` name each
    /// prompt's random stream (its index in the caller's full list);
    /// `lengths` each prompt's bounds (default: `params.min_new_tokens`
    /// and no sentence end).
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        streams: &[usize],
        params: &SamplingParams,
        stop: &[String],
        steer: Option<&SteerBatch>,
        lengths: Option<&[RowLength]>,
    ) -> Result<Vec<Generation>> {
        params.validate()?;
        if prompts.is_empty() || streams.len() != prompts.len() {
            return Err(EpsvecError::InvalidInput("generate needs one stream index per prompt".into()));
        }
        let lengths = match lengths {
            Some(l) if l.len() != prompts.len() => {
                return Err(EpsvecError::InvalidInput("generate needs one length bound per prompt".into()));
            }
            Some(l) => l.to_vec(),
            None => vec![RowLength { min_new: params.min_new_tokens, end_at_sentence_after: None }; prompts.len()],
        };
        if let Some(l) = lengths.iter().find(|l| l.min_new > params.max_new_tokens) {
            return Err(EpsvecError::InvalidInput(format!(
                "min_new_tokens ({}) must not exceed max_new_tokens ({})",
                l.min_new, params.max_new_tokens
            )));
        }
        let config = &self.model.config;
        let device = self.device();
        let n = prompts.len();
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if width + params.max_new_tokens > config.max_position_embeddings as usize {
            return Err(EpsvecError::InvalidInput(format!(
                "prompt of {width} tokens + max_new_tokens {} exceeds the context of {} tokens",
                params.max_new_tokens, config.max_position_embeddings
            )));
        }
        let seqs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let pad = config.pad_token_id.or(config.eos_token_ids.first().copied()).unwrap_or(0);
        let prefill = Batch::left_padded(&seqs, pad, device)?;
        let capacity = (width + params.max_new_tokens) as i64;
        let hidden_size = config.hidden_size as usize;
        let mut sampler = Sampler::new(params, streams)?;
        let mut steering = match steer {
            Some(s) => Some(self.steering(s, n)?),
            None => None,
        };
        let eos: Vec<i64> = config.eos_token_ids.iter().map(|&id| id as i64).collect();
        // Only when some row has a minimum: the tokens that would end a row early.
        let early_end = if lengths.iter().any(|l| l.min_new > 0) {
            Some(Tensor::f_from_slice(&self.early_end_tokens(stop)?)?.f_to_device(device)?)
        } else {
            None
        };
        // Only when some row may end at a sentence: which tokens close one.
        let sentence_end = if lengths.iter().any(|l| l.end_at_sentence_after.is_some()) {
            Some(self.sentence_end_tokens()?)
        } else {
            None
        };
        let mut active = Active {
            rows: (0..n).collect(),
            key_mask: prefill.attention_mask.shallow_clone(),
            positions: prefill.positions.f_select(1, -1)?,
            seen: if params.repetition_penalty != 1.0 { Some(self.seen_tokens(&prefill)?) } else { None },
        };
        let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut finish: Vec<Option<Finish>> = vec![None; n];

        let (hidden, mut cache) =
            if n > 1 && prompts.iter().all(|p| p == &prompts[0]) && steer.is_none_or(|s| s.rows_equal(hidden_size)) {
                self.prefill_once(&prompts[0], n, capacity, steer)?
            } else {
                let mut cache = KvCache::new(config, n as i64, capacity, self.model.placement)?;
                (self.forward_step(&prefill, &mut cache, steering.as_mut())?, cache)
            };
        let mut logits = self.model.logits(&hidden)?;
        // The steering vectors on the host, for the plain-Rust step; copied again only when rows leave.
        let mut host_vectors: Option<Vec<(usize, Vec<f32>)>> = None;
        for step in 0..params.max_new_tokens {
            logits = logits.f_to_kind(Kind::Float)?;
            if let Some(early_end) = early_end.as_ref() {
                let short: Vec<i64> = (0..active.rows.len())
                    .filter(|&r| step < lengths[active.rows[r]].min_new)
                    .map(|r| r as i64)
                    .collect();
                if !short.is_empty() {
                    let short = Tensor::f_from_slice(&short)?.f_to_device(device)?;
                    let held = logits.f_index_select(0, &short)?.f_index_fill(1, early_end, f64::NEG_INFINITY)?;
                    logits = logits.f_index_copy(0, &short, &held)?;
                }
            }
            let next = sampler.sample(&sampler.process(&logits, active.seen.as_ref())?)?;
            let next_host: Vec<i64> = Vec::try_from(&next.f_to_device(Device::Cpu)?)?;

            let mut keep = Vec::with_capacity(next_host.len());
            for (r, &token) in next_host.iter().enumerate() {
                let row = active.rows[r];
                if eos.contains(&token) {
                    finish[row] = Some(Finish::Eos);
                    continue;
                }
                outputs[row].push(token as u32);
                let ends_sentence_past_bound = |bound: usize| {
                    outputs[row].len() >= bound
                        && sentence_end.as_ref().is_some_and(|ends| ends.get(token as usize) == Some(&true))
                };
                let hits_stop = !stop.is_empty() && self.hits_stop(&outputs[row], stop)?;
                if hits_stop || lengths[row].end_at_sentence_after.is_some_and(ends_sentence_past_bound) {
                    finish[row] = Some(Finish::Stop);
                } else if outputs[row].len() == params.max_new_tokens {
                    finish[row] = Some(Finish::Length);
                } else {
                    keep.push(r);
                }
            }
            if keep.is_empty() {
                break;
            }
            let mut next = next;
            if keep.len() < active.rows.len() {
                let index =
                    Tensor::f_from_slice(&keep.iter().map(|&r| r as i64).collect::<Vec<_>>())?.f_to_device(device)?;
                cache.keep_rows(&index)?;
                sampler.keep_rows(&keep);
                if let Some(s) = steering.as_mut() {
                    s.keep_rows(&index)?;
                }
                host_vectors = None;
                active = Active {
                    rows: keep.iter().map(|&r| active.rows[r]).collect(),
                    key_mask: active.key_mask.f_index_select(0, &index)?,
                    positions: active.positions.f_index_select(0, &index)?,
                    seen: active.seen.map(|s| s.f_index_select(0, &index)).transpose()?,
                };
                next = next.f_index_select(0, &index)?;
            }
            let next = next.f_unsqueeze(1)?;
            if let Some(seen) = active.seen.as_mut() {
                let _ = seen.f_scatter_value_(1, &next, 1)?;
            }
            let ones = Tensor::f_ones([keep.len() as i64, 1], (Kind::Int64, device))?;
            active.key_mask = Tensor::f_cat(&[&active.key_mask, &ones], 1)?;
            active.positions = active.positions.f_add_scalar(1)?;
            let step_batch = Batch {
                input_ids: next,
                attention_mask: active.key_mask.shallow_clone(),
                positions: active.positions.f_unsqueeze(1)?,
            };
            if let Some(s) = steering.as_mut() {
                s.prefill = false;
            }
            logits = match self.model.decode_step() {
                Some(step) if step.fits(keep.len()) => {
                    if host_vectors.is_none() {
                        host_vectors =
                            Some(steering.as_ref().map(Steering::layer_vectors).transpose()?.unwrap_or_default());
                    }
                    step.step(&step_batch, &mut cache, host_vectors.as_deref().unwrap_or_default())?
                }
                _ => self.model.logits(&self.forward_step(&step_batch, &mut cache, steering.as_mut())?)?,
            };
        }

        outputs
            .into_iter()
            .zip(finish)
            .map(|(ids, finish)| {
                let text = cut_at_stop(self.tokenizer.decode(&ids, true)?, stop);
                Ok(Generation { ids, text, finish: finish.unwrap_or(Finish::Length) })
            })
            .collect()
    }

    /// Next-token logits at every position of `ids` (`[len, vocab]`),
    /// computed as generation computes them: the first token as a prompt,
    /// then one decoding step per token (the plain-Rust step where it
    /// runs), so a decoding setting such as 8-bit activations can be
    /// checked against the exact path.
    pub fn stepwise_logits(&self, ids: &[u32]) -> Result<ndarray::Array2<f32>> {
        let config = &self.model.config;
        if ids.is_empty() || ids.len() > config.max_position_embeddings as usize {
            return Err(EpsvecError::InvalidInput(format!(
                "stepwise logits need 1 to {} tokens, got {}",
                config.max_position_embeddings,
                ids.len()
            )));
        }
        let device = self.device();
        let mut cache = KvCache::new(config, 1, ids.len() as i64, self.model.placement)?;
        let first = Batch::left_padded(&[&ids[..1]], 0, device)?;
        let mut rows = vec![self.model.logits(&self.forward_step(&first, &mut cache, None)?)?];
        for (t, &token) in ids.iter().enumerate().skip(1) {
            let batch = Batch {
                input_ids: Tensor::f_from_slice(&[i64::from(token)])?.f_reshape([1, 1])?.f_to_device(device)?,
                attention_mask: Tensor::f_ones([1, t as i64 + 1], (Kind::Int64, device))?,
                positions: Tensor::f_from_slice(&[t as i64])?.f_reshape([1, 1])?.f_to_device(device)?,
            };
            rows.push(match self.model.decode_step() {
                Some(step) if step.fits(1) => step.step(&batch, &mut cache, &[])?,
                _ => self.model.logits(&self.forward_step(&batch, &mut cache, None)?)?,
            });
        }
        let logits = Tensor::f_cat(&rows, 0)?.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let values = Vec::<f32>::try_from(logits.f_reshape([-1])?)?;
        Ok(ndarray::Array2::from_shape_vec((ids.len(), config.vocab_size as usize), values)
            .expect("one row of logits per token"))
    }

    /// The prefill of `rows` copies of one prompt: run once, then its last
    /// state and KV cache are copied to every row.
    fn prefill_once(
        &self,
        prompt: &[u32],
        rows: usize,
        capacity: i64,
        steer: Option<&SteerBatch>,
    ) -> Result<(Tensor, KvCache)> {
        let one = Batch::left_padded(&[prompt], 0, self.device())?;
        let mut cache = KvCache::new(&self.model.config, 1, prompt.len() as i64, self.model.placement)?;
        let mut steering = match steer {
            Some(s) => Some(self.steering(&s.first_row(self.model.config.hidden_size as usize), 1)?),
            None => None,
        };
        let hidden = self.forward_step(&one, &mut cache, steering.as_mut())?;
        let hidden = hidden.f_expand([rows as i64, -1], false)?.f_contiguous()?;
        Ok((hidden, KvCache::repeat_prefix(&cache, rows as i64, capacity)?))
    }

    /// One forward over new tokens; returns the last position's final-normed state.
    fn forward_step(&self, batch: &Batch, cache: &mut KvCache, steering: Option<&mut Steering>) -> Result<Tensor> {
        let hidden = match steering {
            Some(s) => self.model.forward(batch, Some(cache), &mut [s as &mut dyn BlockHook], true)?,
            None => self.model.forward(batch, Some(cache), &mut [], true)?,
        };
        Ok(hidden.f_select(1, -1)?)
    }

    fn steering(&self, steer: &SteerBatch, rows: usize) -> Result<Steering> {
        let hidden = self.model.config.hidden_size as usize;
        if steer.vectors.len() != rows * steer.layers.len() * hidden {
            return Err(EpsvecError::InvalidInput(format!(
                "steering vectors hold {} values; expected {rows} rows x {} layers x {hidden}",
                steer.vectors.len(),
                steer.layers.len()
            )));
        }
        if let Some(&bad) = steer.layers.iter().find(|&&l| l >= self.model.config.num_layers) {
            return Err(EpsvecError::InvalidInput(format!(
                "cannot steer layer {bad}: the model has {} layers",
                self.model.config.num_layers
            )));
        }
        let vectors = Tensor::f_from_slice(&steer.vectors)?
            .f_reshape([rows as i64, steer.layers.len() as i64, hidden as i64])?
            .f_to_device(self.device())?
            .f_to_kind(self.model.placement.kind)?;
        Ok(Steering::new(steer.layers.clone(), vectors, steer.positions))
    }

    /// `[batch, vocab]` bool: the real (non-pad) tokens of each prompt.
    fn seen_tokens(&self, batch: &Batch) -> Result<Tensor> {
        let (rows, vocab) = (batch.input_ids.size()[0], self.model.config.vocab_size);
        let seen = Tensor::f_zeros([rows, vocab], (Kind::Int64, self.device()))?;
        // Padding scatters into a spare column, dropped afterwards.
        let spare = Tensor::f_zeros([rows, 1], (Kind::Int64, self.device()))?;
        let ids = batch.attention_mask.f_ne(0)?.f_where_self(&batch.input_ids, &spare.f_add_scalar(vocab)?)?;
        let seen = Tensor::f_cat(&[&seen, &spare], 1)?.f_scatter_value(1, &ids, 1)?;
        Ok(seen.f_narrow(1, 0, vocab)?.f_ne(0)?)
    }

    /// Each token id's own text, decoded once per engine: the stop and
    /// sentence checks below read the whole vocabulary.
    fn token_texts(&self) -> Result<&[String]> {
        if let Some(texts) = self.token_texts.get() {
            return Ok(texts);
        }
        let vocab = self.tokenizer.vocab_size().min(self.model.config.vocab_size as usize) as u32;
        let texts = (0..vocab).map(|id| self.tokenizer.decode(&[id], false)).collect::<Result<Vec<_>>>()?;
        Ok(self.token_texts.get_or_init(|| texts))
    }

    /// The tokens suppressed while a row is below its minimum length: end of
    /// sequence, and every token whose text contains a stop string or the
    /// opening character of one that opens with neither a letter nor a digit
    /// (the `\n` or `<` that starts the end of an example).
    fn early_end_tokens(&self, stop: &[String]) -> Result<Vec<i64>> {
        let openings: Vec<char> =
            stop.iter().filter_map(|s| s.chars().next()).filter(|c| !c.is_alphanumeric()).collect();
        let ends_early = |text: &String| text.contains(&openings[..]) || stop.iter().any(|s| text.contains(s.as_str()));
        let mut ids: Vec<i64> = self.model.config.eos_token_ids.iter().map(|&id| id as i64).collect();
        ids.extend(self.token_texts()?.iter().enumerate().filter(|(_, t)| ends_early(t)).map(|(id, _)| id as i64));
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Per token id, whether its text closes a sentence (`closes_sentence`).
    fn sentence_end_tokens(&self) -> Result<Vec<bool>> {
        Ok(self.token_texts()?.iter().map(|t| closes_sentence(t)).collect())
    }

    fn hits_stop(&self, ids: &[u32], stop: &[String]) -> Result<bool> {
        let text = self.tokenizer.decode(ids, true)?;
        Ok(stop.iter().any(|s| text.contains(s.as_str())))
    }
}

/// Whether a token's text ends a sentence (`"."`, `"!)"`, `"?\""`), not
/// merely contains a full stop (`".com"`).
fn closes_sentence(text: &str) -> bool {
    let body = text.trim_end().trim_end_matches(['"', '\'', '\u{201d}', '\u{2019}', ')', ']']);
    body.ends_with(['.', '!', '?'])
}

/// The text before the earliest stop string.
fn cut_at_stop(mut text: String, stop: &[String]) -> String {
    if let Some(cut) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{closes_sentence, cut_at_stop};

    #[test]
    fn sentence_ends_are_final_punctuation_with_closing_marks() {
        for text in [".", " great.", "!", "?)", ".\"", "...", ". "] {
            assert!(closes_sentence(text), "{text:?}");
        }
        for text in [".com", " film", "", "\"", ",", "Mr"] {
            assert!(!closes_sentence(text), "{text:?}");
        }
    }

    #[test]
    fn cuts_before_the_earliest_stop() {
        let stop = vec!["</end>".to_string(), "Label:".to_string()];
        assert_eq!(cut_at_stop("a good film\nLabel: x </end>".into(), &stop), "a good film\n");
        assert_eq!(cut_at_stop("no stop here".into(), &stop), "no stop here");
    }
}
