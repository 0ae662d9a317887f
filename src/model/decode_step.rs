//! One decoding step of a few rows (1-64) on the CPU in float32, in plain
//! Rust.
//!
//! Through libtorch a step is ~1,000 small ops whose dispatch costs about as
//! much as reading the weights at batch 1. This step does a block's
//! arithmetic directly on the same weights (float32 held `[in, out]` by
//! `Kernel::Transposed`, or GGUF blocks) and the same KV cache, for every
//! family from the description `block::Block` follows: RMSNorms where the
//! family has them, fused q/k/v (with bias and per-head or whole q/k norms),
//! rotary embedding (per-layer-type tables), attention over the cached keys
//! (padding and sliding window respected, score scale and soft cap), the
//! gated MLP (SiLU or GELU-tanh), the steering adds, the final norm, the LM
//! head and its soft cap (products: `matmul::times` or `BlockWeight::decode`,
//! on libtorch's own threads). Other weight layouts take the libtorch path.

use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::error::{EpsvecError, Result};
use crate::model::block::Block;
use crate::model::blocks::BlockWeight;
use crate::model::config::{Activation, Family, ModelConfig};
use crate::model::kernels::Kernel;
use crate::model::kv_cache::KvCache;
use crate::model::layers::{Batch, Embedding, Linear, QkNorm, RmsNorm, Storage};
use crate::model::matmul;

/// A float32 CPU tensor this module only reads, through `floats`.
struct Weight(Tensor);

// SAFETY: libtorch tensors may be read from several threads at once; a
// `Weight` is never written after construction.
unsafe impl Sync for Weight {}

impl Weight {
    fn new(t: &Tensor) -> Option<Self> {
        (t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous()).then(|| Self(t.shallow_clone()))
    }

    fn floats(&self) -> &[f32] {
        // SAFETY: checked in `new`: contiguous float32 on the CPU, `numel` elements.
        unsafe { std::slice::from_raw_parts(self.0.data_ptr() as *const f32, self.0.numel()) }
    }
}

/// What a linear multiplies by: float32 held `[in, out]`, or GGUF blocks.
enum Product {
    Floats(Weight),
    Blocks(Arc<BlockWeight>),
}

/// A linear and its bias.
struct Matrix {
    product: Product,
    bias: Option<Weight>,
    out_dim: usize,
}

impl Matrix {
    fn new(linear: &Linear) -> Option<Self> {
        let (product, out_dim) = match &linear.storage {
            Storage::Tensor(w, Kernel::Transposed) => (Product::Floats(Weight::new(w)?), w.size()[1] as usize),
            Storage::Blocks(b) => (Product::Blocks(b.clone()), b.out_dim()),
            Storage::Tensor(..) => return None,
        };
        let bias = match &linear.bias {
            Some(b) => Some(Weight::new(b)?),
            None => None,
        };
        Some(Self { product, bias, out_dim })
    }

    /// `y = x · W + b` for `rows` rows. `scratch` is scratch space.
    fn apply(&self, x: &[f32], rows: usize, y: &mut [f32], scratch: &mut Vec<f32>) {
        match &self.product {
            Product::Floats(w) => matmul::times(x, rows, w.floats(), y, scratch),
            Product::Blocks(b) => b.decode(x, rows, y),
        }
        if let Some(b) = &self.bias {
            for y in y.chunks_exact_mut(self.out_dim) {
                add_assign(y, b.floats());
            }
        }
    }
}

/// An RMSNorm's weight and epsilon.
struct Norm {
    weight: Weight,
    eps: f32,
}

impl Norm {
    fn new(norm: &RmsNorm) -> Option<Self> {
        Some(Self { weight: Weight::new(&norm.weight)?, eps: norm.eps as f32 })
    }

    /// `x / rms(x) * w`, in place, over each `w`-sized piece of `x`.
    fn apply(&self, x: &mut [f32]) {
        let w = self.weight.floats();
        for piece in x.chunks_exact_mut(w.len()) {
            let mean_square = dot(piece, piece) / w.len() as f32;
            let scale = 1.0 / (mean_square + self.eps).sqrt();
            for (v, &w) in piece.iter_mut().zip(w) {
                *v = w * (*v * scale);
            }
        }
    }
}

/// One block, by the same description as `block::Block`.
struct Layer {
    attention_in: Option<Norm>,
    qkv: Matrix,
    /// Queries' and keys' RMSNorms: per head or over the whole projections
    /// (`Norm::apply` normalises each piece of its weight's width).
    qk_norm: Option<(Norm, Norm)>,
    o_proj: Matrix,
    attention_out: Option<Norm>,
    mlp_in: Option<Norm>,
    gate_up: Matrix,
    down: Matrix,
    mlp_out: Option<Norm>,
    window: Option<i64>,
    /// Which rotary table (`ModelConfig::rope_table`).
    rope: usize,
}

impl Layer {
    fn new(block: &Block, window: Option<i64>, rope: usize) -> Option<Self> {
        // `Some(None)` where the family has no such norm; `None` where it has one this step cannot read.
        let norm = |n: &Option<RmsNorm>| match n {
            Some(n) => Norm::new(n).map(Some),
            None => Some(None),
        };
        let attention = &block.attention;
        let qk_norm = match &attention.qk_norm {
            QkNorm::None => None,
            QkNorm::PerHead(q, k) | QkNorm::FullWidth(q, k) => Some((Norm::new(q)?, Norm::new(k)?)),
        };
        Some(Self {
            attention_in: norm(&block.attention_in)?,
            qkv: Matrix::new(&attention.qkv)?,
            qk_norm,
            o_proj: Matrix::new(&attention.o_proj)?,
            attention_out: norm(&block.attention_out)?,
            mlp_in: norm(&block.mlp_in)?,
            gate_up: Matrix::new(&block.mlp.gate_up)?,
            down: Matrix::new(&block.mlp.down)?,
            mlp_out: norm(&block.mlp_out)?,
            window,
            rope,
        })
    }
}

/// The model's weights, viewed for plain-Rust decoding steps.
pub struct DecodeStep {
    embed: Embedding,
    /// Gemma multiplies embeddings by `sqrt(hidden)`.
    embed_scale: Option<f32>,
    layers: Vec<Layer>,
    norm: Norm,
    lm_head: Matrix,
    /// `[head_dim / 2]` rotary frequencies per table.
    inv_freq: Vec<Vec<f32>>,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    intermediate: usize,
    act: Activation,
    /// Attention score scale, and the soft cap on scores (Gemma 2).
    scale: f32,
    softcap: Option<f32>,
    /// The soft cap on logits (Gemma 2).
    final_softcap: Option<f32>,
    /// Whether every product reads GGUF blocks (which take any row count on any CPU).
    blocks_only: bool,
}

impl DecodeStep {
    /// The step for a decoder of `blocks` (any family), or `None` when some
    /// part is not a float32 CPU tensor or GGUF blocks in the layouts this
    /// step reads.
    pub fn new(
        config: &ModelConfig,
        blocks: &[Block],
        embed: &Embedding,
        norm: &RmsNorm,
        lm_head: &Linear,
        inv_freq: &[Tensor],
    ) -> Result<Option<Self>> {
        let layers: Option<Vec<Layer>> = blocks
            .iter()
            .enumerate()
            .map(|(l, b)| Layer::new(b, config.sliding_window[l], config.rope_table(l)))
            .collect();
        let blocks_only = lm_head.holds_blocks() && blocks.iter().all(|b| b.linears().iter().all(|l| l.holds_blocks()));
        let (Some(layers), Some(norm), Some(lm_head)) = (layers, Norm::new(norm), Matrix::new(lm_head)) else {
            return Ok(None);
        };
        if !embed.is_cpu_float() {
            return Ok(None);
        }
        let head_dim = config.head_dim as usize;
        let scale = config.query_pre_attn_scalar.map_or((head_dim as f64).powf(-0.5), |s| s.powf(-0.5));
        let family = config.architecture.family();
        Ok(Some(Self {
            embed: embed.share(),
            embed_scale: (family == Family::Gemma).then(|| (config.hidden_size as f64).sqrt() as f32),
            layers,
            norm,
            lm_head,
            inv_freq: inv_freq.iter().map(|f| Ok(Vec::try_from(f.f_to_kind(Kind::Float)?)?)).collect::<Result<_>>()?,
            hidden: config.hidden_size as usize,
            heads: config.num_heads as usize,
            kv_heads: config.num_kv_heads as usize,
            head_dim,
            intermediate: config.intermediate_size as usize,
            act: config.activation,
            scale: scale as f32,
            softcap: config.attn_logit_softcapping.map(|c| c as f32),
            final_softcap: config.final_logit_softcapping.map(|c| c as f32),
            blocks_only,
        }))
    }

    /// Whether a batch of `rows` rows can take this step on this CPU (the
    /// float32 few-row kernel needs AVX-512; block products run anywhere).
    pub fn fits(&self, rows: usize) -> bool {
        rows == 1 || (rows <= matmul::MAX_ROWS && (self.blocks_only || matmul::has_avx512()))
    }

    /// Logits `[rows, vocab]` after each row's one new token in `batch`
    /// (whose mask covers the cache slots and the new token), appending
    /// their keys and values to `cache`. `steer` adds, after each listed
    /// block, a `[rows, hidden]` vector.
    pub fn step(&self, batch: &Batch, cache: &mut KvCache, steer: &[(usize, Vec<f32>)]) -> Result<Tensor> {
        let rows = batch.input_ids.size()[0] as usize;
        let (slot, vocab) = (cache.filled() as usize, self.lm_head.out_dim);
        let flat = |t: &Tensor| -> Result<Vec<i64>> { Ok(Vec::<i64>::try_from(&t.f_reshape([-1])?)?) };
        let (tokens, positions, key_mask) =
            (flat(&batch.input_ids)?, flat(&batch.positions)?, flat(&batch.attention_mask)?);
        let fine = self.fits(rows)
            && tokens.len() == rows
            && positions.len() == rows
            && key_mask.len() == rows * (slot + 1)
            && tokens.iter().all(|t| (0..vocab as i64).contains(t))
            && steer.iter().all(|(_, v)| v.len() == rows * self.hidden);
        if !fine {
            return Err(EpsvecError::InvalidInput(format!(
                "decoding step: tokens {:?} (vocab {vocab}), mask {:?} for {} cached slots",
                batch.input_ids.size(),
                batch.attention_mask.size(),
                slot
            )));
        }
        let mut caches = Vec::with_capacity(self.layers.len());
        for l in 0..self.layers.len() {
            let (k, v) = cache.buffers(l);
            caches.push((KvBuffer::new(k, rows, slot)?, KvBuffer::new(v, rows, slot)?));
        }
        let mut x = vec![0.0; rows * self.hidden];
        self.embed.lookup(&tokens, &mut x)?;
        let logits = self.run(x, &positions, &key_mask, &mut caches, steer);
        cache.advance(1);
        Ok(Tensor::f_from_slice(&logits)?.f_reshape([rows as i64, vocab as i64])?)
    }

    /// The step from the new tokens' embeddings `x` (`[rows, hidden]`).
    fn run(
        &self,
        mut x: Vec<f32>,
        positions: &[i64],
        key_mask: &[i64],
        caches: &mut [(KvBuffer, KvBuffer)],
        steer: &[(usize, Vec<f32>)],
    ) -> Vec<f32> {
        let (rows, h, hd, inter) = (positions.len(), self.hidden, self.head_dim, self.intermediate);
        let (q_dim, kv_dim) = (self.heads * hd, self.kv_heads * hd);
        if let Some(scale) = self.embed_scale {
            x.iter_mut().for_each(|v| *v *= scale);
        }
        let tables: Vec<Vec<(Vec<f32>, Vec<f32>)>> =
            self.inv_freq.iter().map(|f| positions.iter().map(|&p| rotary(f, p)).collect()).collect();
        let (mut normed, mut out) = (vec![0.0; rows * h], vec![0.0; rows * h]);
        let mut qkv = vec![0.0; rows * (q_dim + 2 * kv_dim)];
        let mut attended = vec![0.0; rows * q_dim];
        let (mut gate_up, mut act) = (vec![0.0; rows * 2 * inter], vec![0.0; rows * inter]);
        let mut scratch = Vec::new();
        let maybe = |norm: &Option<Norm>, x: &mut [f32]| norm.iter().for_each(|n| n.apply(x));
        for (l, (layer, (keys, values))) in self.layers.iter().zip(caches.iter_mut()).enumerate() {
            normed.copy_from_slice(&x);
            maybe(&layer.attention_in, &mut normed);
            layer.qkv.apply(&normed, rows, &mut qkv, &mut scratch);
            for (b, row) in qkv.chunks_exact_mut(q_dim + 2 * kv_dim).enumerate() {
                let (q, kv) = row.split_at_mut(q_dim);
                let (k, v) = kv.split_at_mut(kv_dim);
                if let Some((q_norm, k_norm)) = &layer.qk_norm {
                    q_norm.apply(q);
                    k_norm.apply(k);
                }
                let (cos, sin) = &tables[layer.rope][b];
                for head in q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)) {
                    rotate(head, cos, sin);
                }
                keys.write(b, k, hd);
                values.write(b, v, hd);
            }
            self.attend(&qkv, keys, values, key_mask, layer.window, &mut attended);
            layer.o_proj.apply(&attended, rows, &mut out, &mut scratch);
            maybe(&layer.attention_out, &mut out);
            add_assign(&mut x, &out);

            normed.copy_from_slice(&x);
            maybe(&layer.mlp_in, &mut normed);
            layer.gate_up.apply(&normed, rows, &mut gate_up, &mut scratch);
            for (act, gate_up) in act.chunks_exact_mut(inter).zip(gate_up.chunks_exact(2 * inter)) {
                let (gate, up) = gate_up.split_at(inter);
                for ((a, &g), &u) in act.iter_mut().zip(gate).zip(up) {
                    *a = self.activate(g) * u;
                }
            }
            layer.down.apply(&act, rows, &mut out, &mut scratch);
            maybe(&layer.mlp_out, &mut out);
            add_assign(&mut x, &out);
            if let Some((_, vectors)) = steer.iter().find(|(at, _)| *at == l) {
                add_assign(&mut x, vectors);
            }
        }
        self.norm.apply(&mut x);
        let mut logits = vec![0.0; rows * self.lm_head.out_dim];
        self.lm_head.apply(&x, rows, &mut logits, &mut scratch);
        if let Some(cap) = self.final_softcap {
            logits.iter_mut().for_each(|v| *v = (*v / cap).tanh() * cap);
        }
        logits
    }

    /// The MLP's gate activation, as libtorch computes it in float32.
    fn activate(&self, g: f32) -> f32 {
        match self.act {
            Activation::Silu => g / (1.0 + (-g).exp()),
            Activation::GeluTanh => {
                const BETA: f32 = std::f32::consts::SQRT_2 * std::f32::consts::FRAC_2_SQRT_PI * 0.5;
                0.5 * g * (1.0 + (BETA * (g + 0.044715 * (g * g * g))).tanh())
            }
        }
    }

    /// Scaled dot-product attention of each row's query heads (in `qkv`,
    /// `[rows, q + k + v]`) over that row's real cache slots (within the
    /// window); one task per row and key/value head serves the group of
    /// query heads that share it. `out` is `[rows, q]`.
    fn attend(
        &self,
        qkv: &[f32],
        keys: &KvBuffer,
        values: &KvBuffer,
        key_mask: &[i64],
        window: Option<i64>,
        out: &mut [f32],
    ) {
        let (hd, heads, kv_heads) = (self.head_dim, self.heads, self.kv_heads);
        let (group, width) = (heads / kv_heads, (heads + 2 * kv_heads) * hd);
        let slots = key_mask.len() / keys.rows;
        let oldest = window.map_or(0, |w| slots.saturating_sub(w as usize));
        let (scale, softcap) = (self.scale, self.softcap);
        let out = matmul::Shared(out.as_mut_ptr());
        matmul::parallel(&|t, threads| {
            let mut scores = Vec::new();
            for task in (t..keys.rows * kv_heads).step_by(threads) {
                let (b, kv_head) = (task / kv_heads, task % kv_heads);
                let mask = &key_mask[b * slots..(b + 1) * slots];
                let visible: Vec<usize> = (oldest..slots).filter(|&s| mask[s] != 0 || s == slots - 1).collect();
                let first = b * heads + kv_head * group; // the group's first query head, counted over all rows
                let q = &qkv[b * width + kv_head * group * hd..][..group * hd];
                // SAFETY: these heads' part of `out`, written by this task only.
                let out = unsafe { std::slice::from_raw_parts_mut(out.get().add(first * hd), group * hd) };
                let group = Group { keys, values, row: b, kv_head, visible: &visible, hd, softcap };
                group.attend(q, scale, out, &mut scores);
            }
        });
    }
}

/// One row's key/value head and the cache slots its queries may see.
struct Group<'a> {
    keys: &'a KvBuffer,
    values: &'a KvBuffer,
    row: usize,
    kv_head: usize,
    visible: &'a [usize],
    hd: usize,
    /// `cap * tanh(score / cap)` on the scaled scores (Gemma 2).
    softcap: Option<f32>,
}

impl Group<'_> {
    /// Softmax attention of the `q.len() / hd` query heads in `q` into
    /// `out`, each key and value read once for all of them.
    fn attend(&self, q: &[f32], scale: f32, out: &mut [f32], scores: &mut Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the feature the function is compiled for.
                return unsafe { self.attend_avx512(q, scale, out, scores) };
            }
            if is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                return unsafe { self.attend_avx2(q, scale, out, scores) };
            }
        }
        self.attend_with(q, scale, out, scores)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn attend_avx512(&self, q: &[f32], scale: f32, out: &mut [f32], scores: &mut Vec<f32>) {
        self.attend_with(q, scale, out, scores)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn attend_avx2(&self, q: &[f32], scale: f32, out: &mut [f32], scores: &mut Vec<f32>) {
        self.attend_with(q, scale, out, scores)
    }

    #[inline(always)]
    fn attend_with(&self, q: &[f32], scale: f32, out: &mut [f32], scores: &mut Vec<f32>) {
        let (hd, n) = (self.hd, self.visible.len());
        scores.clear();
        scores.resize(q.len() / hd * n, 0.0);
        for (i, &s) in self.visible.iter().enumerate() {
            let key = self.keys.row(self.row, self.kv_head, s, hd);
            for (g, q) in q.chunks_exact(hd).enumerate() {
                let score = dot(q, key) * scale;
                scores[g * n + i] = self.softcap.map_or(score, |cap| (score / cap).tanh() * cap);
            }
        }
        for weights in scores.chunks_exact_mut(n) {
            let max = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0.0;
            for w in weights.iter_mut() {
                *w = (*w - max).exp();
                total += *w;
            }
            weights.iter_mut().for_each(|w| *w /= total);
        }
        out.fill(0.0);
        for (i, &s) in self.visible.iter().enumerate() {
            let value = self.values.row(self.row, self.kv_head, s, hd);
            for (g, out) in out.chunks_exact_mut(hd).enumerate() {
                let p = scores[g * n + i];
                for (o, &v) in out.iter_mut().zip(value) {
                    *o += p * v;
                }
            }
        }
    }
}

/// One layer's key or value buffer, `[rows, kv_heads, capacity, head_dim]`.
struct KvBuffer {
    ptr: *mut f32,
    numel: usize,
    rows: usize,
    kv_heads: usize,
    capacity: usize,
    slot: usize,
}

// SAFETY: the buffer is written only through `&mut self` (`write`) and read
// through `&self`; the cache it points into is borrowed mutably for the step.
unsafe impl Sync for KvBuffer {}

impl KvBuffer {
    fn new(t: &mut Tensor, rows: usize, slot: usize) -> Result<Self> {
        let size: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let ok = t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous() && size[0] == rows;
        if !ok || slot >= size[2] {
            return Err(EpsvecError::InvalidInput(format!(
                "decoding step needs a {rows}-row float32 CPU cache with room; got {size:?} at slot {slot}"
            )));
        }
        let (ptr, numel) = (t.data_ptr() as *mut f32, t.numel());
        Ok(Self { ptr, numel, rows, kv_heads: size[1], capacity: size[2], slot })
    }

    fn all(&self) -> &[f32] {
        // SAFETY: checked in `new`; the tensor outlives the step.
        unsafe { std::slice::from_raw_parts(self.ptr, self.numel) }
    }

    fn at(&self, row: usize, kv_head: usize, slot: usize, hd: usize) -> usize {
        ((row * self.kv_heads + kv_head) * self.capacity + slot) * hd
    }

    fn row(&self, row: usize, kv_head: usize, slot: usize, hd: usize) -> &[f32] {
        let at = self.at(row, kv_head, slot, hd);
        &self.all()[at..at + hd]
    }

    /// Stores `row`'s `[kv_heads * head_dim]` new keys or values at this step's slot.
    fn write(&mut self, row: usize, heads: &[f32], hd: usize) {
        let ats: Vec<usize> = (0..self.kv_heads).map(|g| self.at(row, g, self.slot, hd)).collect();
        // SAFETY: as `all`, and `&mut self` makes this the only access.
        let all = unsafe { std::slice::from_raw_parts_mut(self.ptr, self.numel) };
        for (at, head) in ats.into_iter().zip(heads.chunks_exact(hd)) {
            all[at..at + hd].copy_from_slice(head);
        }
    }
}

/// HF's tables for one position: float32 `position * inv_freq`, then cos and sin.
fn rotary(inv_freq: &[f32], position: i64) -> (Vec<f32>, Vec<f32>) {
    let angles = inv_freq.iter().map(|f| position as f32 * f);
    angles.map(|a| (a.cos(), a.sin())).unzip()
}

/// HF's `x * cos + rotate_half(x) * sin` for one head.
fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let (x1, x2) = x.split_at_mut(cos.len());
    for (((a, b), &c), &s) in x1.iter_mut().zip(x2.iter_mut()).zip(cos).zip(sin) {
        (*a, *b) = (*a * c - *b * s, *b * c + *a * s);
    }
}

/// Sixteen running sums, so the compiler can vectorise the loop.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (a16, b16) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a16.remainder().iter().zip(b16.remainder()).map(|(x, y)| x * y).sum();
    let mut lanes = [0.0f32; 16];
    for (a, b) in a16.zip(b16) {
        for i in 0..16 {
            lanes[i] += a[i] * b[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn add_assign(y: &mut [f32], x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::{BlockHook, Positions, Steering};
    use crate::model::decoder::Decoder;
    use crate::model::placement::Placement;
    use crate::model::weights::WeightSource;

    /// Random weights, the same for a name every time (norms near 1).
    struct RandomWeights;

    impl WeightSource for RandomWeights {
        fn contains(&self, name: &str) -> bool {
            name != "lm_head.weight"
        }

        fn load(&self, name: &str, shape: &[i64], kind: Kind, device: Device) -> Result<Tensor> {
            let seed = name.bytes().fold(7i64, |h, b| h.wrapping_mul(31).wrapping_add(b as i64));
            tch::manual_seed(seed);
            let noise = Tensor::f_randn(shape, (kind, device))?;
            Ok(if name.contains("norm") {
                noise.f_mul_scalar(0.1)?.f_add_scalar(1.0)?
            } else {
                noise.f_mul_scalar(0.2)?
            })
        }
    }

    fn tiny(variant: &str, extra: &str) -> Decoder {
        // The step reads `[in, out]` weights: hold every linear that way.
        std::env::set_var("EPSVEC_LINEAR_KERNEL", "transposed");
        let dir = std::env::temp_dir().join(format!("epsvec-row-step-{variant}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"architectures": ["{variant}"], "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
                "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
                "tie_word_embeddings": true {extra}}}"#
            ),
        )
        .unwrap();
        let config = ModelConfig::from_hf_file(&config).unwrap();
        Decoder::load(&RandomWeights, config, Placement { device: Device::Cpu, kind: Kind::Float }).unwrap()
    }

    /// A cache of two left-padded prompts (the second shorter, so some of
    /// its slots are padding), keeping the rows `keep`, with room for
    /// `steps` more tokens; with the rows' masks and next positions.
    fn prefilled(model: &Decoder, keep: &[i64], steps: i64) -> (KvCache, Tensor, Vec<i64>) {
        let rows: [&[u32]; 2] = [&[5, 9, 13, 2, 44, 71, 3], &[8, 21, 34, 55]];
        let batch = Batch::left_padded(&rows, 0, Device::Cpu).unwrap();
        let mut cache = KvCache::new(&model.config, 2, 7 + steps, model.placement).unwrap();
        let _prefill = model.forward(&batch, Some(&mut cache), &mut [], true).unwrap();
        let keep_t = Tensor::from_slice(keep);
        cache.keep_rows(&keep_t).unwrap();
        let positions = keep.iter().map(|&r| rows[r as usize].len() as i64).collect();
        (cache, batch.attention_mask.index_select(0, &keep_t), positions)
    }

    /// Tokens fed one step at a time through the libtorch forward and
    /// through the plain-Rust step (each on its own copy of the cache), one
    /// row and two, give the same logits.
    fn assert_steps_agree(model: &Decoder) {
        let step = model.decode_step().expect("a float32 CPU model has a decoding step");
        for keep in [&[1i64][..], &[0, 1]] {
            if !step.fits(keep.len()) {
                // Float32 weights take several rows only with AVX-512 (`fits`); libtorch decodes them here.
                assert!(!matmul::has_avx512(), "{} rows fit with AVX-512", keep.len());
                continue;
            }
            let n = keep.len() as i64;
            let vectors = Tensor::randn([n, 1, model.config.hidden_size], (Kind::Float, Device::Cpu));
            let mut steering = Steering::new(vec![1], vectors, Positions::Last);
            steering.prefill = false;
            let steer = steering.layer_vectors().unwrap();
            let (mut torch_cache, mut mask, mut positions) = prefilled(model, keep, 6);
            let (mut rust_cache, ..) = prefilled(model, keep, 6);
            for token in [17i64, 3, 99, 0, 42, 61] {
                mask = Tensor::cat(&[&mask, &Tensor::ones([n, 1], (Kind::Int64, Device::Cpu))], 1);
                let tokens: Vec<i64> = (0..n).map(|r| (token + 7 * r) % 100).collect();
                let batch = Batch {
                    input_ids: Tensor::from_slice(&tokens).reshape([n, 1]),
                    attention_mask: mask.shallow_clone(),
                    positions: Tensor::from_slice(&positions).reshape([n, 1]),
                };
                let hooks: &mut [&mut dyn BlockHook] = &mut [&mut steering];
                let hidden = model.forward(&batch, Some(&mut torch_cache), hooks, true).unwrap();
                let want = model.logits(&hidden.select(1, -1)).unwrap();
                let got = step.step(&batch, &mut rust_cache, &steer).unwrap();
                let diff = (got - want).abs().max().double_value(&[]);
                assert!(diff < 1e-4, "rows {keep:?}, tokens {tokens:?} at {positions:?}: logits differ by {diff}");
                positions.iter_mut().for_each(|p| *p += 1);
            }
        }
    }

    #[test]
    fn matches_the_libtorch_step_on_every_llama_variant() {
        assert_steps_agree(&tiny("LlamaForCausalLM", ""));
        assert_steps_agree(&tiny("Qwen2ForCausalLM", "")); // q/k/v biases
        assert_steps_agree(&tiny("Qwen3ForCausalLM", r#", "head_dim": 32"#)); // per-head q/k norm
        assert_steps_agree(&tiny("MistralForCausalLM", r#", "sliding_window": 5"#));
    }

    #[test]
    fn matches_the_libtorch_step_on_gemma_and_olmo() {
        // Soft caps small enough to act, a score scale unlike head_dim, windows that bind.
        assert_steps_agree(&tiny(
            "Gemma2ForCausalLM",
            r#", "head_dim": 16, "query_pre_attn_scalar": 24, "sliding_window": 4,
            "attn_logit_softcapping": 2.0, "final_logit_softcapping": 3.0"#,
        ));
        // Two rotary tables: sliding layers have their own theta.
        assert_steps_agree(&tiny(
            "Gemma3ForCausalLM",
            r#", "head_dim": 32, "query_pre_attn_scalar": 24, "sliding_window": 4,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
            "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0"#,
        ));
        assert_steps_agree(&tiny("Olmo2ForCausalLM", "")); // post-norms, q/k norms over whole projections
        assert_steps_agree(&tiny(
            "Olmo3ForCausalLM",
            r#", "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]"#,
        ));
    }
}
