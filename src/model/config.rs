//! Model configuration: HF `config.json` (both the transformers-4 and -5
//! dialects) or GGUF metadata, resolved into the one `ModelConfig` the
//! engine uses.

use std::path::Path;

use serde::Deserialize;

use crate::error::{EpsvecError, Result};
use crate::gguf::GgufValue;

/// Architectures the engine implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Gemma2,
    Gemma3,
    Olmo2,
    Olmo3,
}

/// The decoder block layout an architecture uses (one module each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Pre-norm blocks (`model::llama`).
    Llama,
    /// Sandwich norms, `(1 + w)` RMSNorm, scaled embeddings (`model::gemma`).
    Gemma,
    /// Post-norm blocks (`model::olmo`).
    Olmo,
}

/// The registry: each architecture's HF class name, its GGUF name when
/// epsvec reads it from GGUF, and its family. The supported list and the
/// error messages come from here.
const REGISTRY: &[(Architecture, &str, Option<&str>, Family)] = &[
    (Architecture::Llama, "LlamaForCausalLM", Some("llama"), Family::Llama),
    (Architecture::Mistral, "MistralForCausalLM", Some("mistral"), Family::Llama),
    (Architecture::Qwen2, "Qwen2ForCausalLM", Some("qwen2"), Family::Llama),
    (Architecture::Qwen3, "Qwen3ForCausalLM", Some("qwen3"), Family::Llama),
    (Architecture::Gemma2, "Gemma2ForCausalLM", Some("gemma2"), Family::Gemma),
    (Architecture::Gemma3, "Gemma3ForCausalLM", Some("gemma3"), Family::Gemma),
    (Architecture::Olmo2, "Olmo2ForCausalLM", Some("olmo2"), Family::Olmo),
    (Architecture::Olmo3, "Olmo3ForCausalLM", None, Family::Olmo),
];

/// The supported architectures, for error messages.
pub fn supported() -> String {
    let hf: Vec<&str> = REGISTRY.iter().map(|r| r.1).collect();
    let gguf: Vec<&str> = REGISTRY.iter().filter_map(|r| r.2).collect();
    format!("{} (HF directories); GGUF: {}", hf.join(", "), gguf.join(", "))
}

impl Architecture {
    fn entry(self) -> &'static (Architecture, &'static str, Option<&'static str>, Family) {
        REGISTRY.iter().find(|r| r.0 == self).expect("every architecture is registered")
    }

    fn from_hf(name: &str) -> Option<Self> {
        REGISTRY.iter().find(|r| r.1 == name).map(|r| r.0)
    }

    fn from_gguf(name: &str) -> Option<Self> {
        REGISTRY.iter().find(|r| r.2 == Some(name)).map(|r| r.0)
    }

    pub fn hf_name(self) -> &'static str {
        self.entry().1
    }

    pub fn family(self) -> Family {
        self.entry().3
    }
}

/// The MLP's gate activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// `gelu_pytorch_tanh` (Gemma).
    GeluTanh,
}

/// Where queries and keys are RMS-normalised, if anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkNormKind {
    None,
    /// Over each head (Qwen3, Gemma 3).
    PerHead,
    /// Over the whole q and k projections (OLMo 2/3).
    FullWidth,
}

/// How rotary frequencies are derived from `rope_theta`.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Llama 3.1's frequency-dependent rescaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position: f64,
    },
    /// Positions divided by `factor` ("linear"; Gemma 3's global layers).
    Linear(f64),
    /// Per-frequency divisors stored in a GGUF `rope_freqs.weight` tensor
    /// (how llama.cpp stores Llama 3.1 scaling).
    Factors(Vec<f32>),
}

/// Everything the engine needs to know about a checkpoint.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: usize,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: i64,
    pub tie_word_embeddings: bool,
    /// Bias on the q/k/v projections (Qwen2 always; Llama/Qwen3 when `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (`attention_bias` in Llama/Qwen3).
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub activation: Activation,
    /// RMSNorm of queries and keys (Qwen3, Gemma 3, OLMo 2/3).
    pub qk_norm: QkNormKind,
    /// Attention scores scale by `query_pre_attn_scalar^-1/2` instead of `head_dim^-1/2` (Gemma).
    pub query_pre_attn_scalar: Option<f64>,
    /// `cap * tanh(x / cap)` on attention scores and on logits (Gemma 2).
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    /// Sliding attention window per layer (None = full attention).
    pub sliding_window: Vec<Option<i64>>,
    /// Rotary base of the sliding-window layers when it has its own (Gemma 3), unscaled.
    pub sliding_rope_theta: Option<f64>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

/// `config.json` as written by transformers 4 and 5; missing fields take
/// the transformers defaults of the architecture.
#[derive(Deserialize)]
struct RawConfig {
    architectures: Option<Vec<String>>,
    vocab_size: i64,
    hidden_size: i64,
    intermediate_size: i64,
    num_hidden_layers: usize,
    num_attention_heads: i64,
    num_key_value_heads: Option<i64>,
    head_dim: Option<i64>,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<RawRope>,
    rope_parameters: Option<RawRopeParameters>,
    rope_local_base_freq: Option<f64>,
    #[serde(default = "default_max_position")]
    max_position_embeddings: i64,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    hidden_activation: Option<String>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    sliding_window: Option<i64>,
    sliding_window_pattern: Option<usize>,
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
    layer_types: Option<Vec<String>>,
    bos_token_id: Option<TokenIds>,
    eos_token_id: Option<TokenIds>,
    pad_token_id: Option<TokenIds>,
}

fn default_rms_eps() -> f64 {
    1e-6
}

fn default_max_position() -> i64 {
    2048
}

#[derive(Deserialize)]
struct RawRope {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    legacy_type: Option<String>,
    rope_theta: Option<f64>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

/// transformers 5's `rope_parameters`: one set, or one per layer type
/// (`full_attention`, `sliding_attention`: Gemma 3, OLMo 3).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawRopeParameters {
    PerLayerType(std::collections::HashMap<String, RawRope>),
    One(RawRope),
}

/// `eos_token_id` may be one id or a list of ids.
#[derive(Deserialize)]
#[serde(untagged)]
enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    fn into_vec(self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![id],
            Self::Many(ids) => ids,
        }
    }
}

impl ModelConfig {
    /// Which rotary table layer `layer` uses: 0, or 1 for a sliding-window
    /// layer when sliding layers have their own `rope_theta` (Gemma 3).
    pub fn rope_table(&self, layer: usize) -> usize {
        usize::from(self.sliding_window[layer].is_some() && self.sliding_rope_theta.is_some())
    }

    /// Reads and resolves `config.json` from an HF model directory.
    pub fn from_hf_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EpsvecError::io(path, e))?;
        let raw: RawConfig =
            serde_json::from_str(&text).map_err(|e| EpsvecError::corrupt(path, format!("invalid config.json: {e}")))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Self> {
        let arch_name = raw.architectures.as_ref().and_then(|a| a.first()).cloned().unwrap_or_default();
        let architecture = Architecture::from_hf(&arch_name)
            .ok_or_else(|| EpsvecError::UnsupportedArchitecture { found: arch_name.clone(), supported: supported() })?;
        let family = architecture.family();
        let activation = match (family, raw.hidden_activation.as_deref().or(raw.hidden_act.as_deref())) {
            (Family::Gemma, None | Some("gelu_pytorch_tanh")) => Activation::GeluTanh,
            (Family::Llama | Family::Olmo, None | Some("silu")) => Activation::Silu,
            (_, Some(act)) => {
                return Err(EpsvecError::ModelLoad(format!(
                    "hidden activation {act:?} is not supported for {arch_name} (it uses {})",
                    if family == Family::Gemma { "\"gelu_pytorch_tanh\"" } else { "\"silu\"" }
                )))
            }
        };
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / raw.num_attention_heads.max(1));
        let rope = resolve_rope_parameters(
            architecture,
            raw.rope_parameters,
            raw.rope_scaling,
            raw.rope_theta,
            raw.rope_local_base_freq,
        )?;
        let attention_bias = raw.attention_bias.unwrap_or(false);
        let sliding_window = resolve_sliding(
            architecture,
            raw.num_hidden_layers,
            raw.sliding_window,
            raw.use_sliding_window,
            raw.max_window_layers,
            raw.layer_types.as_deref(),
            raw.sliding_window_pattern,
        )?;
        let (rope_theta, rope_scaling) = (rope.theta, rope.scaling);
        let sliding_rope_theta = rope.sliding_theta.filter(|_| sliding_window.iter().any(Option::is_some));
        let config = Self {
            architecture,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(family == Family::Gemma),
            qkv_bias: architecture == Architecture::Qwen2 || attention_bias,
            o_bias: architecture != Architecture::Qwen2 && attention_bias,
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            activation,
            qk_norm: match architecture {
                Architecture::Qwen3 | Architecture::Gemma3 => QkNormKind::PerHead,
                Architecture::Olmo2 | Architecture::Olmo3 => QkNormKind::FullWidth,
                _ => QkNormKind::None,
            },
            query_pre_attn_scalar: (family == Family::Gemma).then(|| raw.query_pre_attn_scalar.unwrap_or(256.0)),
            attn_logit_softcapping: raw.attn_logit_softcapping.filter(|_| architecture == Architecture::Gemma2),
            final_logit_softcapping: raw.final_logit_softcapping.filter(|_| family == Family::Gemma),
            sliding_window,
            sliding_rope_theta,
            bos_token_id: raw.bos_token_id.and_then(|t| t.into_vec().first().copied()),
            eos_token_ids: raw.eos_token_id.map(TokenIds::into_vec).unwrap_or_default(),
            pad_token_id: raw.pad_token_id.and_then(|t| t.into_vec().first().copied()),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants the forward pass relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(EpsvecError::ModelLoad(format!("invalid model config: {msg}")));
        if self.num_layers == 0 || self.hidden_size <= 0 || self.vocab_size <= 0 || self.intermediate_size <= 0 {
            return bad(format!(
                "layers {}, hidden {}, vocab {}, intermediate {} must all be positive",
                self.num_layers, self.hidden_size, self.vocab_size, self.intermediate_size
            ));
        }
        if self.num_heads <= 0 || self.num_kv_heads <= 0 || self.num_heads % self.num_kv_heads != 0 {
            return bad(format!(
                "{} attention heads cannot be shared by {} key/value heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim <= 0 || self.head_dim % 2 != 0 {
            return bad(format!("head_dim {} must be positive and even", self.head_dim));
        }
        if !(self.rope_theta > 0.0) || !(self.rms_norm_eps >= 0.0) {
            return bad(format!("rope_theta {} and rms_norm_eps {}", self.rope_theta, self.rms_norm_eps));
        }
        if self.sliding_window.len() != self.num_layers {
            return bad(format!("{} layer types for {} layers", self.sliding_window.len(), self.num_layers));
        }
        Ok(())
    }
}

/// Rotary settings resolved from either dialect.
struct ResolvedRope {
    theta: f64,
    scaling: RopeScaling,
    /// Sliding layers' own base (Gemma 3), when they have one.
    sliding_theta: Option<f64>,
}

/// transformers 5 nests rope settings in `rope_parameters` (per layer type
/// for Gemma 3 and OLMo 3); 4 uses `rope_scaling`, a top-level `rope_theta`
/// and, for Gemma 3, `rope_local_base_freq`.
fn resolve_rope_parameters(
    arch: Architecture,
    parameters: Option<RawRopeParameters>,
    legacy: Option<RawRope>,
    legacy_theta: Option<f64>,
    legacy_local_theta: Option<f64>,
) -> Result<ResolvedRope> {
    let default_theta = match arch {
        Architecture::Gemma3 => 1_000_000.0,
        Architecture::Olmo3 => 500_000.0,
        _ => 10_000.0,
    };
    let (full, sliding) = match parameters {
        Some(RawRopeParameters::PerLayerType(mut map)) => {
            (map.remove("full_attention"), map.remove("sliding_attention"))
        }
        Some(RawRopeParameters::One(one)) => (Some(one), None),
        None => (legacy, None),
    };
    let theta = full.as_ref().and_then(|r| r.rope_theta).or(legacy_theta).unwrap_or(default_theta);
    let scaling = resolve_rope(full.as_ref())?;
    if resolve_rope(sliding.as_ref())? != RopeScaling::None {
        return Err(EpsvecError::ModelLoad("rope scaling on sliding-window layers is not supported".into()));
    }
    let sliding_theta = match (arch, sliding.and_then(|r| r.rope_theta)) {
        (_, Some(t)) => Some(t),
        (Architecture::Gemma3, None) => Some(legacy_local_theta.unwrap_or(10_000.0)),
        _ => None,
    };
    Ok(ResolvedRope { theta, scaling, sliding_theta })
}

fn resolve_rope(rope: Option<&RawRope>) -> Result<RopeScaling> {
    let Some(rope) = rope else { return Ok(RopeScaling::None) };
    let kind = rope.rope_type.as_deref().or(rope.legacy_type.as_deref()).unwrap_or("default");
    let need = |v: Option<f64>, name: &str| {
        v.ok_or_else(|| EpsvecError::ModelLoad(format!("{kind} rope scaling needs {name}")))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear(need(rope.factor, "factor")?)),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: need(rope.factor, "factor")?,
            low_freq_factor: need(rope.low_freq_factor, "low_freq_factor")?,
            high_freq_factor: need(rope.high_freq_factor, "high_freq_factor")?,
            original_max_position: need(rope.original_max_position_embeddings, "original_max_position_embeddings")?,
        }),
        other => Err(EpsvecError::ModelLoad(format!(
            "rope type {other:?} is not supported; supported: default, linear, llama3"
        ))),
    }
}

/// Per-layer sliding window, following each architecture's transformers config.
fn resolve_sliding(
    arch: Architecture,
    num_layers: usize,
    window: Option<i64>,
    use_sliding: Option<bool>,
    max_window_layers: Option<usize>,
    layer_types: Option<&[String]>,
    pattern: Option<usize>,
) -> Result<Vec<Option<i64>>> {
    let window = match arch {
        Architecture::Llama | Architecture::Olmo2 => None,
        Architecture::Mistral | Architecture::Gemma2 | Architecture::Gemma3 | Architecture::Olmo3 => window,
        // Qwen only slides when `use_sliding_window` is set.
        Architecture::Qwen2 | Architecture::Qwen3 => window.filter(|_| use_sliding.unwrap_or(false)),
    };
    let Some(window) = window else { return Ok(vec![None; num_layers]) };
    if let Some(types) = layer_types {
        if types.len() != num_layers {
            return Err(EpsvecError::ModelLoad(format!("{} layer_types for {num_layers} layers", types.len())));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                "sliding_attention" => Ok(Some(window)),
                "full_attention" => Ok(None),
                other => Err(EpsvecError::ModelLoad(format!("unknown layer type {other:?}"))),
            })
            .collect();
    }
    // transformers' defaults when a config lists no layer_types.
    let sliding_unless_every = |n: usize| (0..num_layers).map(|i| ((i + 1) % n != 0).then_some(window)).collect();
    Ok(match arch {
        Architecture::Mistral => vec![Some(window); num_layers],
        Architecture::Gemma2 => sliding_unless_every(2),
        Architecture::Gemma3 => sliding_unless_every(pattern.unwrap_or(6).max(1)),
        Architecture::Olmo3 => sliding_unless_every(4),
        _ => {
            let first = max_window_layers.unwrap_or(num_layers);
            (0..num_layers).map(|i| (i >= first).then_some(window)).collect()
        }
    })
}

/// Reads GGUF metadata keys `{arch}.*` (through `get`) into a config.
/// `has_output` says whether the file has its own `output.weight` (else
/// embeddings are tied).
pub fn from_gguf_metadata<'a>(
    arch_name: &str,
    get: impl Fn(&str) -> Option<&'a GgufValue>,
    vocab_size: i64,
    has_output: bool,
    rope_factors: Option<Vec<f32>>,
) -> Result<ModelConfig> {
    let key = |k: &str| format!("{arch_name}.{k}");
    let get_u64 = |k: &str| get(&key(k)).and_then(GgufValue::as_u64);
    let get_f64 = |k: &str| get(&key(k)).and_then(GgufValue::as_f64);
    let window = get_u64("attention.sliding_window").map(|w| w as i64);
    let architecture = match Architecture::from_gguf(arch_name) {
        // llama.cpp converts OLMo 3 as "olmo2" with a sliding window.
        Some(Architecture::Olmo2) if window.is_some() => Architecture::Olmo3,
        Some(arch) => arch,
        None => {
            return Err(EpsvecError::UnsupportedArchitecture { found: arch_name.to_string(), supported: supported() })
        }
    };
    if let Some(kind) = get(&key("rope.scaling.type")).and_then(GgufValue::as_str) {
        if !matches!(kind, "none" | "linear") {
            return Err(EpsvecError::ModelLoad(format!(
                "GGUF rope scaling {kind:?} is not supported; supported: none, linear"
            )));
        }
    }
    let need = |k: &str| get_u64(k).ok_or_else(|| EpsvecError::ModelLoad(format!("GGUF metadata lacks {}", key(k))));
    let hidden_size = need("embedding_length")? as i64;
    let num_heads = need("attention.head_count")? as i64;
    let num_layers = need("block_count")? as usize;
    let head_dim = get_u64("attention.key_length").map(|v| v as i64).unwrap_or(hidden_size / num_heads.max(1));
    let family = architecture.family();
    let gemma = family == Family::Gemma;
    // The sliding layers: llama.cpp's per-layer pattern (bools, or "every n-th layer is global") when
    // written; otherwise what transformers' GGUF loader leaves at the config class's defaults: Gemma 3
    // slides on five layers of six, with its own RoPE base (10,000) there, and query_pre_attn_scalar 256.
    let pattern = get(&key("attention.sliding_window_pattern"));
    let layer_types: Option<Vec<String>> = pattern.and_then(GgufValue::as_array).map(|flags| {
        flags
            .iter()
            .map(|f| if f.as_bool() == Some(true) { "sliding_attention" } else { "full_attention" }.to_string())
            .collect()
    });
    let every = pattern.and_then(GgufValue::as_u64).map(|n| n as usize);
    let sliding_window = match architecture {
        Architecture::Mistral => vec![window; num_layers],
        Architecture::Gemma2 | Architecture::Gemma3 | Architecture::Olmo3 => {
            resolve_sliding(architecture, num_layers, window, None, None, layer_types.as_deref(), every)?
        }
        _ => vec![None; num_layers],
    };
    // Gemma 2's soft-caps: llama.cpp writes them; Gemma2Config's defaults otherwise.
    let softcap =
        |name: &str, default: f64| (architecture == Architecture::Gemma2).then(|| get_f64(name).unwrap_or(default));
    let token_id = |k: &str| get(k).and_then(GgufValue::as_u64).map(|v| v as u32);
    let config = ModelConfig {
        architecture,
        vocab_size,
        hidden_size,
        intermediate_size: need("feed_forward_length")? as i64,
        num_layers,
        num_heads,
        num_kv_heads: get_u64("attention.head_count_kv").map(|v| v as i64).unwrap_or(num_heads),
        head_dim,
        rms_norm_eps: get_f64("attention.layer_norm_rms_epsilon").unwrap_or(if gemma { 1e-6 } else { 1e-5 }),
        rope_theta: get_f64("rope.freq_base").unwrap_or(1e4),
        rope_scaling: match (rope_factors, get_f64("rope.scaling.factor")) {
            (Some(factors), _) => RopeScaling::Factors(factors),
            (None, Some(factor)) if factor != 1.0 => RopeScaling::Linear(factor),
            _ => RopeScaling::None,
        },
        max_position_embeddings: get_u64("context_length").map(|v| v as i64).unwrap_or(2048),
        tie_word_embeddings: !has_output,
        qkv_bias: architecture == Architecture::Qwen2,
        o_bias: false,
        mlp_bias: false,
        activation: if gemma { Activation::GeluTanh } else { Activation::Silu },
        qk_norm: match architecture {
            Architecture::Qwen3 | Architecture::Gemma3 => QkNormKind::PerHead,
            _ if family == Family::Olmo => QkNormKind::FullWidth,
            _ => QkNormKind::None,
        },
        query_pre_attn_scalar: gemma.then_some(256.0),
        attn_logit_softcapping: softcap("attn_logit_softcapping", 50.0),
        final_logit_softcapping: softcap("final_logit_softcapping", 30.0),
        sliding_rope_theta: (architecture == Architecture::Gemma3 && sliding_window.iter().any(Option::is_some))
            .then_some(10_000.0),
        sliding_window,
        bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
        eos_token_ids: token_id("tokenizer.ggml.eos_token_id").map(|v| vec![v]).unwrap_or_default(),
        pad_token_id: token_id("tokenizer.ggml.padding_token_id"),
    };
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ModelConfig> {
        ModelConfig::from_raw(serde_json::from_str(json).unwrap())
    }

    const BASE: &str = r#""vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2"#;

    #[test]
    fn reads_both_rope_dialects() {
        let old = parse(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE}, "rope_theta": 500000.0,
            "rope_scaling": {{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}}}"#
        ))
        .unwrap();
        let new = parse(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE}, "rope_parameters": {{"rope_theta": 500000.0,
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}}}"#
        ))
        .unwrap();
        assert_eq!(old.rope_theta, 500000.0);
        assert_eq!(old.rope_scaling, new.rope_scaling);
        assert_eq!(new.rope_theta, 500000.0);
        assert_eq!(old.head_dim, 16);
    }

    #[test]
    fn qwen_biases_and_norms() {
        let q2 = parse(&format!(r#"{{"architectures": ["Qwen2ForCausalLM"], {BASE}}}"#)).unwrap();
        assert!(q2.qkv_bias && !q2.o_bias && q2.qk_norm == QkNormKind::None);
        let q3 = parse(&format!(r#"{{"architectures": ["Qwen3ForCausalLM"], {BASE}, "head_dim": 32}}"#)).unwrap();
        assert!(!q3.qkv_bias && q3.qk_norm == QkNormKind::PerHead);
        assert_eq!(q3.head_dim, 32);
    }

    #[test]
    fn unknown_architecture_names_the_supported_ones() {
        let err = parse(&format!(r#"{{"architectures": ["GPT2LMHeadModel"], {BASE}}}"#)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("GPT2LMHeadModel") && msg.contains("Qwen3ForCausalLM"), "{msg}");
    }

    #[test]
    fn sliding_windows() {
        let m = parse(&format!(r#"{{"architectures": ["MistralForCausalLM"], {BASE}, "sliding_window": 4}}"#)).unwrap();
        assert_eq!(m.sliding_window, vec![Some(4), Some(4)]);
        let q = parse(&format!(r#"{{"architectures": ["Qwen2ForCausalLM"], {BASE}, "sliding_window": 4}}"#)).unwrap();
        assert_eq!(q.sliding_window, vec![None, None]);
    }

    #[test]
    fn rejects_inconsistent_heads() {
        let err = parse(
            r#"{"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 64,
            "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 3}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("key/value heads"));
    }

    #[test]
    fn gemma3_rope_in_both_dialects_and_default_layer_types() {
        let base = BASE.replace(r#""num_hidden_layers": 2"#, r#""num_hidden_layers": 7"#);
        let legacy = parse(&format!(
            r#"{{"architectures": ["Gemma3ForCausalLM"], {base}, "sliding_window": 512,
            "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
            "rope_scaling": {{"rope_type": "linear", "factor": 8.0}}}}"#
        ))
        .unwrap();
        let new = parse(&format!(
            r#"{{"architectures": ["Gemma3ForCausalLM"], {base}, "sliding_window": 512,
            "rope_parameters": {{"full_attention": {{"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}},
            "sliding_attention": {{"rope_type": "default", "rope_theta": 10000.0}}}}}}"#
        ))
        .unwrap();
        for c in [&legacy, &new] {
            assert_eq!((c.rope_theta, c.sliding_rope_theta), (1e6, Some(1e4)));
            assert_eq!(c.rope_scaling, RopeScaling::Linear(8.0));
            // Every sixth layer is global (transformers' default pattern).
            let global: Vec<usize> = (0..7).filter(|&l| c.sliding_window[l].is_none()).collect();
            assert_eq!(global, vec![5]);
            assert!(c.tie_word_embeddings && c.activation == Activation::GeluTanh && c.qk_norm == QkNormKind::PerHead);
            assert_eq!(c.query_pre_attn_scalar, Some(256.0));
        }
    }

    #[test]
    fn gemma2_and_olmo_defaults() {
        let g2 = parse(&format!(
            r#"{{"architectures": ["Gemma2ForCausalLM"], {BASE}, "sliding_window": 8, "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0, "hidden_activation": "gelu_pytorch_tanh"}}"#
        ))
        .unwrap();
        assert_eq!(g2.sliding_window, vec![Some(8), None]);
        assert_eq!((g2.attn_logit_softcapping, g2.final_logit_softcapping), (Some(50.0), Some(30.0)));
        assert_eq!((g2.qk_norm, g2.sliding_rope_theta), (QkNormKind::None, None));
        let o2 = parse(&format!(r#"{{"architectures": ["Olmo2ForCausalLM"], {BASE}, "sliding_window": 8}}"#)).unwrap();
        assert_eq!((o2.sliding_window.clone(), o2.qk_norm), (vec![None, None], QkNormKind::FullWidth));
        assert!(!o2.tie_word_embeddings && o2.architecture.family() == Family::Olmo);
        let bad = parse(&format!(r#"{{"architectures": ["Gemma2ForCausalLM"], {BASE}, "hidden_activation": "relu"}}"#));
        assert!(bad.unwrap_err().to_string().contains("gelu_pytorch_tanh"));
        let yarn = parse(&format!(
            r#"{{"architectures": ["Olmo3ForCausalLM"], {BASE}, "rope_parameters": {{"rope_type": "yarn", "factor": 4.0}}}}"#
        ));
        assert!(yarn.unwrap_err().to_string().contains("yarn"));
    }

    fn from_metadata(entries: &[(&str, GgufValue)]) -> Result<ModelConfig> {
        let map: std::collections::HashMap<String, GgufValue> =
            entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        from_gguf_metadata("olmo2", |k| map.get(k), 100, true, None)
    }

    #[test]
    fn olmo_from_gguf_metadata() {
        let mut entries = vec![
            ("olmo2.embedding_length", GgufValue::U32(64)),
            ("olmo2.feed_forward_length", GgufValue::U32(128)),
            ("olmo2.block_count", GgufValue::U32(3)),
            ("olmo2.attention.head_count", GgufValue::U32(4)),
            ("olmo2.attention.head_count_kv", GgufValue::U32(2)),
        ];
        let o2 = from_metadata(&entries).unwrap();
        assert_eq!((o2.architecture, o2.qk_norm), (Architecture::Olmo2, QkNormKind::FullWidth));
        assert_eq!(o2.sliding_window, vec![None; 3]);
        // llama.cpp writes OLMo 3 as "olmo2" with a window and a per-layer pattern.
        entries.push(("olmo2.attention.sliding_window", GgufValue::U32(8)));
        let o3_default = from_metadata(&entries).unwrap();
        assert_eq!(o3_default.architecture, Architecture::Olmo3);
        assert_eq!(o3_default.sliding_window, vec![Some(8), Some(8), Some(8)]);
        let flags = [true, false, true].map(GgufValue::Bool).to_vec();
        entries.push(("olmo2.attention.sliding_window_pattern", GgufValue::Array(flags)));
        assert_eq!(from_metadata(&entries).unwrap().sliding_window, vec![Some(8), None, Some(8)]);
        entries.push(("olmo2.rope.scaling.factor", GgufValue::F32(8.0)));
        entries.push(("olmo2.rope.scaling.type", GgufValue::Str("linear".into())));
        assert_eq!(from_metadata(&entries).unwrap().rope_scaling, RopeScaling::Linear(8.0));
        entries.pop();
        entries.push(("olmo2.rope.scaling.type", GgufValue::Str("yarn".into())));
        assert!(from_metadata(&entries).unwrap_err().to_string().contains("yarn"));
    }
}
