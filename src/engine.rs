//! The engine: a loaded model with its tokenizer, and the batched passes
//! the Python API exposes. Texts are sorted by length into batches so little
//! padding is computed; results come back in the caller's order.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::{Array2, Array3};
use tch::{Device, Kind, Tensor};

use crate::error::{EpsvecError, Result};
use crate::hooks::{BlockHook, Capture, Pool};
use crate::model::blocks::BlockMode;
use crate::model::decoder::Decoder;
use crate::model::kv_cache::KvCache;
use crate::model::layers::Batch;
use crate::model::load::load_checkpoint;
use crate::model::placement::Placement;
use crate::tokenizer::Tokenizer;

pub struct Engine {
    pub model: Decoder,
    pub tokenizer: Tokenizer,
    /// "safetensors" or "gguf".
    pub format: &'static str,
    weight_files: Vec<PathBuf>,
    fingerprint: OnceLock<String>,
    /// Each token id's text, decoded on first use (see `generate`).
    pub(crate) token_texts: OnceLock<Vec<String>>,
}

/// A public prompt prefix after one run: its KV cache and token states.
struct Prefix {
    cache: KvCache,
    /// `[n_layers, len, hidden]`.
    states: Tensor,
    len: usize,
    layers: Vec<usize>,
}

/// Token ids for a batch of texts, ready to run.
pub struct Encoded {
    pub ids: Vec<Vec<u32>>,
    /// How many texts were cut to the model's context length.
    pub truncated: usize,
}

impl Engine {
    /// Loads a checkpoint; see `load_checkpoint` for `blocks`.
    pub fn load(path: &Path, device: Device, kind: Kind, blocks: BlockMode) -> Result<Self> {
        let c = load_checkpoint(path, Placement { device, kind }, blocks)?;
        Ok(Self {
            model: c.model,
            tokenizer: c.tokenizer,
            format: c.format,
            weight_files: c.weight_files,
            fingerprint: OnceLock::new(),
            token_texts: OnceLock::new(),
        })
    }

    /// The weight files' fingerprint (see `model::fingerprint`), computed once.
    pub fn fingerprint(&self) -> Result<String> {
        if let Some(done) = self.fingerprint.get() {
            return Ok(done.clone());
        }
        let computed = crate::model::fingerprint::fingerprint(&self.weight_files)?;
        Ok(self.fingerprint.get_or_init(|| computed).clone())
    }

    pub fn device(&self) -> Device {
        self.model.placement.device
    }

    /// Tokenizes (with the tokenizer's special tokens unless the texts are
    /// already rendered by a chat template), rejecting texts that give no
    /// token and cutting those longer than the context (keeping their start).
    pub fn encode(&self, texts: &[String], add_special_tokens: bool) -> Result<Encoded> {
        if texts.is_empty() {
            return Err(EpsvecError::InvalidInput("texts is empty; pass at least one string".into()));
        }
        let mut ids = self.tokenizer.encode_batch(texts, add_special_tokens)?;
        if let Some(i) = ids.iter().position(|row| row.is_empty()) {
            return Err(EpsvecError::InvalidInput(format!("text {i} is empty: it has no tokens")));
        }
        // A converted tokenizer can know tokens the embedding table lacks
        // (transformers appends <|endoftext|> to some GGUF vocabularies).
        // The error names no text or id: private records are tokenized here.
        let vocab = self.model.config.vocab_size as u32;
        if ids.iter().flatten().any(|&t| t >= vocab) {
            return Err(EpsvecError::Tokenizer(format!(
                "a text has a token outside the model's vocabulary of {vocab}: the tokenizer knows tokens \
                 the model's embedding table lacks"
            )));
        }
        let context = self.model.config.max_position_embeddings.max(1) as usize;
        let mut truncated = 0;
        for row in ids.iter_mut().filter(|r| r.len() > context) {
            row.truncate(context);
            truncated += 1;
        }
        Ok(Encoded { ids, truncated })
    }

    /// Resolves layer indices (negative counts from the end) against the model.
    pub fn resolve_layers(&self, layers: Option<&[i64]>) -> Result<Vec<usize>> {
        let n = self.model.config.num_layers as i64;
        let Some(layers) = layers else { return Ok((0..n as usize).collect()) };
        if layers.is_empty() {
            return Err(EpsvecError::InvalidInput("layers is empty; pass None for every layer".into()));
        }
        layers
            .iter()
            .map(|&l| {
                let resolved = if l < 0 { l + n } else { l };
                if (0..n).contains(&resolved) {
                    Ok(resolved as usize)
                } else {
                    Err(EpsvecError::InvalidInput(format!(
                        "layer {l} does not exist: the model has {n} decoder blocks (0..{})",
                        n - 1
                    )))
                }
            })
            .collect()
    }

    /// Runs `ids` in length-sorted batches of at most `batch_size`, calling
    /// `run` with each batch and the original indices of its rows.
    fn for_each_batch(
        &self,
        ids: &[Vec<u32>],
        batch_size: usize,
        mut run: impl FnMut(&Batch, &[usize]) -> Result<()>,
    ) -> Result<()> {
        if batch_size == 0 {
            return Err(EpsvecError::InvalidInput("batch_size must be at least 1, got 0".into()));
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let pad = self.model.config.pad_token_id.or(self.model.config.eos_token_ids.first().copied()).unwrap_or(0);
        for rows in order.chunks(batch_size) {
            let seqs: Vec<&[u32]> = rows.iter().map(|&i| ids[i].as_slice()).collect();
            let batch = Batch::left_padded(&seqs, pad, self.device())?;
            run(&batch, rows)?;
        }
        Ok(())
    }

    /// Runs `batch` up to the deepest of `layers`, capturing each of them;
    /// mean pooling weighs tokens by `mask` (the attention mask by default).
    fn capture(&self, batch: &Batch, layers: &[usize], pool: Pool, mask: Option<&Tensor>) -> Result<Vec<Tensor>> {
        self.capture_cached(batch, None, layers, pool, mask)
    }

    /// `capture` continuing (and extending) what `cache` holds.
    fn capture_cached(
        &self,
        batch: &Batch,
        cache: Option<&mut KvCache>,
        layers: &[usize],
        pool: Pool,
        mask: Option<&Tensor>,
    ) -> Result<Vec<Tensor>> {
        let mut capture = Capture::new(layers.to_vec(), pool, mask.unwrap_or(&batch.attention_mask))?;
        let _ = self.model.forward(batch, cache, &mut [&mut capture as &mut dyn BlockHook], false)?;
        Ok(capture.into_states())
    }

    /// Pooled residual stream at `layers`: `[n_texts, n_layers, hidden]`.
    /// With `weights` (one per token of each text, not all zero), mean
    /// pooling is the weighted mean: e.g. over a span of a prompt.
    pub fn pooled_states(
        &self,
        ids: &[Vec<u32>],
        layers: &[usize],
        pool: Pool,
        weights: Option<&[Vec<f32>]>,
        batch_size: usize,
    ) -> Result<Array3<f32>> {
        if let Some(weights) = weights {
            check_weights(ids, weights)?;
        }
        let hidden = self.model.config.hidden_size as usize;
        let mut out = Array3::<f32>::zeros((ids.len(), layers.len(), hidden));
        let shared = shared_prefix_len(ids);
        if shared >= MIN_SHARED_PREFIX && self.model.config.sliding_window.iter().all(Option::is_none) {
            self.pooled_after_prefix(ids, shared, layers, pool, weights, batch_size, &mut out)?;
            return Ok(out);
        }
        self.for_each_batch(ids, batch_size, |batch, rows| {
            let mask = match weights {
                Some(w) => Some(left_padded_weights(w, rows, batch.input_ids.size()[1], self.device())?),
                None => None,
            };
            // [batch, n_layers, hidden] on the host.
            let stacked = Tensor::f_stack(&self.capture(batch, layers, pool, mask.as_ref())?, 1)?;
            scatter_rows(&stacked, rows, &mut out)
        })?;
        Ok(out)
    }

    /// `pooled_states` for texts that share their first `prefix` tokens
    /// (fixed-shot prompts): the prefix runs once, its keys and values are
    /// reused by every text, and its (weighted) token sum is added to each
    /// text's own before dividing. Same result, far fewer tokens.
    #[allow(clippy::too_many_arguments)]
    fn pooled_after_prefix(
        &self,
        ids: &[Vec<u32>],
        prefix: usize,
        layers: &[usize],
        pool: Pool,
        weights: Option<&[Vec<f32>]>,
        batch_size: usize,
        out: &mut Array3<f32>,
    ) -> Result<()> {
        let head = self.run_prefix(&ids[0][..prefix], layers)?;
        let all_weights: Vec<Vec<f32>> = match weights {
            Some(w) => w.to_vec(),
            None => ids.iter().map(|t| vec![1.0; t.len()]).collect(),
        };
        let tails: Vec<Vec<u32>> = ids.iter().map(|t| t[prefix..].to_vec()).collect();
        self.for_each_batch(&tails, batch_size, |batch, rows| {
            let states = self.pooled_tails(&head, batch, rows, &all_weights, pool)?;
            scatter_rows(&states, rows, out)
        })
    }

    /// Runs a prompt prefix once: its KV cache and token states at `layers`.
    fn run_prefix(&self, ids: &[u32], layers: &[usize]) -> Result<Prefix> {
        let head = Batch::left_padded(&[ids], 0, self.device())?;
        let mut cache = KvCache::new(&self.model.config, 1, ids.len() as i64, self.model.placement)?;
        let states = self.capture_cached(&head, Some(&mut cache), layers, Pool::None, None)?;
        let states = Tensor::f_stack(&states, 0)?.f_squeeze_dim(1)?; // [n_layers, prefix, hidden]
        Ok(Prefix { cache, states, len: ids.len(), layers: layers.to_vec() })
    }

    /// Pooled states `[rows, n_layers, hidden]` of `batch` (the texts' tails
    /// after `head`); `weights[r]` covers text `r`'s whole prompt.
    fn pooled_tails(
        &self,
        head: &Prefix,
        batch: &Batch,
        rows: &[usize],
        weights: &[Vec<f32>],
        pool: Pool,
    ) -> Result<Tensor> {
        let (device, prefix, layers) = (self.device(), head.len, &head.layers);
        let width = batch.input_ids.size()[1];
        let mut cache = KvCache::repeat_prefix(&head.cache, rows.len() as i64, prefix as i64 + width)?;
        let batch = batch.after_prefix(prefix as i64)?;
        if pool == Pool::Last {
            return Ok(Tensor::f_stack(&self.capture_cached(&batch, Some(&mut cache), layers, Pool::Last, None)?, 1)?);
        }
        let tail_weights: Vec<Vec<f32>> = rows.iter().map(|&r| weights[r][prefix..].to_vec()).collect();
        let local: Vec<usize> = (0..rows.len()).collect();
        let mask = left_padded_weights(&tail_weights, &local, width, device)?;
        let tail_sum = self.capture_cached(&batch, Some(&mut cache), layers, Pool::Sum, Some(&mask))?;
        let tail_sum = Tensor::f_stack(&tail_sum, 1)?; // [rows, n_layers, hidden]
        let head_w: Vec<f32> = rows.iter().flat_map(|&r| weights[r][..prefix].to_vec()).collect();
        let head_w =
            Tensor::f_from_slice(&head_w)?.f_reshape([rows.len() as i64, prefix as i64])?.f_to_device(device)?;
        // [rows, prefix] x [n_layers, prefix, hidden] -> [rows, n_layers, hidden]
        let head_sum = Tensor::f_einsum("rp,lph->rlh", &[&head_w, &head.states], None::<&[i64]>)?;
        let total: Vec<f32> = rows.iter().map(|&r| weights[r].iter().sum::<f32>().max(1.0)).collect();
        let total = Tensor::f_from_slice(&total)?.f_to_device(device)?.f_view([-1, 1, 1])?;
        Ok(tail_sum.f_add(&head_sum)?.f_div(&total)?)
    }

    /// The prompts `prefix + tails[i]`, checked for what running them needs:
    /// non-empty parts, ids in the vocabulary, the context length, and
    /// `weights` that fit. Run over every record before any is sampled, so
    /// whether a release fails never depends on the secret sample.
    pub fn check_prompts(
        &self,
        prefix: &[u32],
        tails: &[&[u32]],
        weights: Option<&[Vec<f32>]>,
    ) -> Result<Vec<Vec<u32>>> {
        // The errors name no record, length or token id: they may reach a
        // log, and those values come from private records.
        if prefix.is_empty() || tails.iter().any(|t| t.is_empty()) {
            return Err(EpsvecError::InvalidInput("a private prompt needs a non-empty prefix and tail".into()));
        }
        let prompts: Vec<Vec<u32>> = tails.iter().map(|t| [prefix, t].concat()).collect();
        if let Some(weights) = weights {
            check_weights(&prompts, weights)
                .map_err(|_| EpsvecError::InvalidInput("a record's pooling weights do not fit its prompt".into()))?;
        }
        let (vocab, context) =
            (self.model.config.vocab_size as u32, self.model.config.max_position_embeddings as usize);
        if prompts.iter().any(|p| p.len() > context.max(1)) {
            return Err(EpsvecError::InvalidInput(format!(
                "a record's prompt has more tokens than the model's context of {context}; \
                 lower max_example_tokens or use fewer/shorter fixed_shots"
            )));
        }
        if prompts.iter().flatten().any(|&t| t >= vocab) {
            return Err(EpsvecError::Tokenizer(format!(
                "a record's prompt has a token id outside the vocabulary of {vocab}"
            )));
        }
        Ok(prompts)
    }

    /// Pooled states of private records' prompts, each `prefix + tails[i]`,
    /// one record per forward pass: a record's state depends on nothing but
    /// its own tokens and the public prefix (no batch neighbours, no padding,
    /// no data-dependent prefix sharing). Returns `[tails, n_layers * hidden]`
    /// row-major. `weights[i]` covers the whole prompt of record `i`.
    pub fn pooled_alone(
        &self,
        prefix: &[u32],
        tails: &[&[u32]],
        weights: Option<&[Vec<f32>]>,
        layers: &[usize],
        pool: Pool,
    ) -> Result<Vec<f32>> {
        let prompts = self.check_prompts(prefix, tails, weights)?;
        let all_weights: Vec<Vec<f32>> = match weights {
            Some(w) => w.to_vec(),
            None => prompts.iter().map(|t| vec![1.0; t.len()]).collect(),
        };
        let hidden = self.model.config.hidden_size as usize;
        let mut out = Array3::<f32>::zeros((tails.len(), layers.len(), hidden));
        // Sliding windows: no prefix cache, so no question of how it meets the window.
        let head = match self.model.config.sliding_window.iter().all(Option::is_none) {
            true => Some(self.run_prefix(prefix, layers)?),
            false => None,
        };
        for (i, prompt) in prompts.iter().enumerate() {
            let states = match &head {
                Some(head) => {
                    let batch = Batch::left_padded(&[&prompt[prefix.len()..]], 0, self.device())?;
                    self.pooled_tails(head, &batch, &[i], &all_weights, pool)?
                }
                None => {
                    let batch = Batch::left_padded(&[prompt.as_slice()], 0, self.device())?;
                    let mask = left_padded_weights(&all_weights, &[i], prompt.len() as i64, self.device())?;
                    let mask = if pool == Pool::Last { None } else { Some(&mask) };
                    Tensor::f_stack(&self.capture(&batch, layers, pool, mask)?, 1)?
                }
            };
            scatter_rows(&states, &[i], &mut out)?;
        }
        Ok(out.into_raw_vec_and_offset().0)
    }

    /// Unpooled residual stream: one `[n_tokens, n_layers, hidden]` per text.
    pub fn token_states(&self, ids: &[Vec<u32>], layers: &[usize], batch_size: usize) -> Result<Vec<Array3<f32>>> {
        let hidden = self.model.config.hidden_size as usize;
        let mut out = vec![Array3::<f32>::zeros((0, layers.len(), hidden)); ids.len()];
        self.for_each_batch(ids, batch_size, |batch, rows| {
            // [batch, seq, n_layers, hidden]
            let stacked = Tensor::f_stack(&self.capture(batch, layers, Pool::None, None)?, 2)?;
            for (r, &row) in rows.iter().enumerate() {
                let n = ids[row].len() as i64;
                let width = stacked.size()[1];
                let own = stacked.f_select(0, r as i64)?.f_narrow(0, width - n, n)?;
                out[row] = Array3::from_shape_vec((n as usize, layers.len(), hidden), to_host_f32(&own)?)
                    .expect("shape matches the tensor");
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Next-token logits at every position of each text: `[n_tokens, vocab]`.
    pub fn logits(&self, ids: &[Vec<u32>], batch_size: usize) -> Result<Vec<Array2<f32>>> {
        let vocab = self.model.config.vocab_size as usize;
        let mut out = vec![Array2::<f32>::zeros((0, vocab)); ids.len()];
        self.for_each_batch(ids, batch_size, |batch, rows| {
            let normed = self.model.forward(batch, None, &mut [], true)?;
            let width = normed.size()[1];
            for (r, &row) in rows.iter().enumerate() {
                let n = ids[row].len() as i64;
                let own = normed.f_select(0, r as i64)?.f_narrow(0, width - n, n)?;
                let logits = self.model.logits(&own)?;
                out[row] = Array2::from_shape_vec((n as usize, vocab), to_host_f32(&logits)?)
                    .expect("shape matches the tensor");
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Log-probabilities of `candidates` as the token after each text:
    /// `[n_texts, n_candidates]`, only the last position through the output
    /// head. Texts that share a long prefix (one instruction, many texts to
    /// score) run it once and reuse its keys and values.
    pub fn next_token_logprobs(&self, ids: &[Vec<u32>], candidates: &[u32], batch_size: usize) -> Result<Array2<f32>> {
        let vocab = self.model.config.vocab_size;
        if let Some(&bad) = candidates.iter().find(|&&c| i64::from(c) >= vocab) {
            return Err(EpsvecError::InvalidInput(format!(
                "candidate token {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let index: Vec<i64> = candidates.iter().map(|&c| i64::from(c)).collect();
        let index = Tensor::f_from_slice(&index)?.f_to_device(self.device())?;
        let mut out = Array2::<f32>::zeros((ids.len(), candidates.len()));
        // Left padding puts every row's last token in the last column.
        let mut score = |normed: &Tensor, rows: &[usize]| -> Result<()> {
            let last = normed.f_select(1, -1)?;
            let logprobs = self.model.logits(&last)?.f_to_kind(Kind::Float)?.f_log_softmax(-1, Kind::Float)?;
            let host = to_host_f32(&logprobs.f_index_select(1, &index)?)?;
            for (chunk, &row) in host.chunks(candidates.len().max(1)).zip(rows) {
                out.row_mut(row).assign(&ndarray::ArrayView1::from(chunk));
            }
            Ok(())
        };
        let shared = shared_prefix_len(ids);
        if shared < MIN_SHARED_PREFIX || self.model.config.sliding_window.iter().any(Option::is_some) {
            self.for_each_batch(ids, batch_size, |batch, rows| {
                score(&self.model.forward(batch, None, &mut [], true)?, rows)
            })?;
            return Ok(out);
        }
        let head = Batch::left_padded(&[&ids[0][..shared]], 0, self.device())?;
        let mut head_cache = KvCache::new(&self.model.config, 1, shared as i64, self.model.placement)?;
        let _ = self.model.forward(&head, Some(&mut head_cache), &mut [], false)?; // fills the cache
        let tails: Vec<Vec<u32>> = ids.iter().map(|t| t[shared..].to_vec()).collect();
        self.for_each_batch(&tails, batch_size, |batch, rows| {
            let width = batch.input_ids.size()[1];
            let mut cache = KvCache::repeat_prefix(&head_cache, rows.len() as i64, shared as i64 + width)?;
            score(&self.model.forward(&batch.after_prefix(shared as i64)?, Some(&mut cache), &mut [], true)?, rows)
        })?;
        Ok(out)
    }
}

/// Shared prefixes shorter than this are not worth a separate pass.
const MIN_SHARED_PREFIX: usize = 16;

/// Tokens every text starts with, leaving each text at least one of its own.
fn shared_prefix_len(ids: &[Vec<u32>]) -> usize {
    if ids.len() < 2 {
        return 0;
    }
    let first = &ids[0];
    let mut n = ids.iter().map(|t| t.len().saturating_sub(1)).min().unwrap_or(0);
    for t in &ids[1..] {
        n = first.iter().zip(t).take(n).take_while(|(a, b)| a == b).count();
    }
    n
}

fn check_weights(ids: &[Vec<u32>], weights: &[Vec<f32>]) -> Result<()> {
    if weights.len() != ids.len() {
        return Err(EpsvecError::InvalidInput(format!("{} weight rows for {} texts", weights.len(), ids.len())));
    }
    for (i, (w, t)) in weights.iter().zip(ids).enumerate() {
        if w.len() != t.len() || !w.iter().all(|x| x.is_finite() && *x >= 0.0) || w.iter().sum::<f32>() <= 0.0 {
            return Err(EpsvecError::InvalidInput(format!(
                "pooling weights of text {i}: need {} finite non-negative values, not all zero",
                t.len()
            )));
        }
    }
    Ok(())
}

/// `[rows, width]` float32 weights of the batch `rows`, left-padded with zeros.
fn left_padded_weights(weights: &[Vec<f32>], rows: &[usize], width: i64, device: Device) -> Result<Tensor> {
    let width = width as usize;
    let mut flat = vec![0f32; rows.len() * width];
    for (r, &row) in rows.iter().enumerate() {
        let w = &weights[row];
        flat[r * width + width - w.len()..(r + 1) * width].copy_from_slice(w);
    }
    Ok(Tensor::f_from_slice(&flat)?.f_reshape([rows.len() as i64, width as i64])?.f_to_device(device)?)
}

/// Copies batch `states` `[rows, n_layers, hidden]` to `out[rows[r]]`.
fn scatter_rows(states: &Tensor, rows: &[usize], out: &mut Array3<f32>) -> Result<()> {
    let (_, n_layers, hidden) = out.dim();
    let values = to_host_f32(states)?;
    for (r, &row) in rows.iter().enumerate() {
        let chunk = &values[r * n_layers * hidden..(r + 1) * n_layers * hidden];
        out.slice_mut(ndarray::s![row, .., ..])
            .assign(&ndarray::ArrayView2::from_shape((n_layers, hidden), chunk).expect("sized by the caller"));
    }
    Ok(())
}

/// Copies a tensor to the host as a flat float32 vector.
fn to_host_f32(t: &Tensor) -> Result<Vec<f32>> {
    let flat = t.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?.f_contiguous()?.f_flatten(0, -1)?;
    Ok(Vec::<f32>::try_from(&flat)?)
}
