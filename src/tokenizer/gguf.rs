//! A `tokenizers::Tokenizer` built from the tokenizer a GGUF file describes in its
//! `tokenizer.ggml.*` metadata, giving the same token ids as transformers 5.x does for
//! `AutoTokenizer.from_pretrained(dir, gguf_file=name)`.
//!
//! transformers builds that tokenizer in layers (`integrations/gguf/gguf_tokenizer_mapping.py`,
//! `convert_gguf_tokenizer`, then `TokenizersBackend.__init__` in `tokenization_utils_tokenizers.py`).
//! We replay the layers in the same order, because the order decides which tokens become added
//! tokens, which of those are special, and which ids tokens missing from the vocabulary get:
//!
//! 1. the base tokenizer of the vocabulary type, `GPT2Tokenizer` or `LlamaTokenizer`, whose
//!    constructor also registers its own default special tokens;
//! 2. `add_gguf_special_tokens`: tokens typed CONTROL become special added tokens, USER_DEFINED
//!    ones plain added tokens;
//! 3. `set_split_regex`: the split regex picked by `tokenizer.ggml.pre`;
//! 4. the class `AutoTokenizer` picks for the architecture, which registers bos/eos/unk/pad as
//!    special tokens and rebuilds the post-processor from `add_bos_token`/`add_eos_token`.
//!
//! transformers ignores `tokenizer.ggml.add_space_prefix` (it reads it, but no builder uses it),
//! and so do we.

use std::collections::{HashMap, HashSet};

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BpeBuilder, Vocab, BPE};
use tokenizers::normalizers::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{EpsvecError, Result};
use crate::gguf::GgufFile;

/// Tokenizer fields read from GGUF metadata (`tokenizer.ggml.*`, plus `general.architecture`).
#[derive(Debug, Clone, Default)]
pub struct GgufTokenizerSpec {
    /// `general.architecture`. transformers picks the tokenizer class by it, and classes differ
    /// in which tokens they mark special (see [`marks_named_tokens_special`]).
    pub architecture: String,
    /// `tokenizer.ggml.model`, e.g. "gpt2", "llama".
    pub model: String,
    /// `tokenizer.ggml.pre`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges` ("a b"); empty when the file has none.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.scores` (sentencepiece).
    pub scores: Option<Vec<f32>>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
}

/// llama.cpp's `LLAMA_TOKEN_TYPE_CONTROL`: special tokens like `<|im_start|>`.
const CONTROL: i32 = 3;
/// llama.cpp's `LLAMA_TOKEN_TYPE_USER_DEFINED`: added but not special, like `<think>`.
const USER_DEFINED: i32 = 4;

/// The architectures whose `AutoTokenizer` class we mirror (the ones the engine runs).
const ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "olmo2"];

/// Architectures whose sentencepiece vocabulary transformers builds with `gemma_tokenizer`.
fn is_gemma(architecture: &str) -> bool {
    matches!(architecture, "gemma" | "gemma2" | "gemma3")
}

// The split regexes of `GGUF_PRE_TOKENIZER_SPLITS` (`gguf_tokenizer_mapping.py`), verbatim.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// `models/qwen2/tokenization_qwen2.py` `PRETOKENIZE_REGEX`.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// `models/qwen3_5/tokenization_qwen3_5.py` `PRETOKENIZE_REGEX`.
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex transformers' `GGUF_PRE_TOKENIZER_SPLITS` gives `tokenizer.ggml.pre`. A `pre`
/// it does not list (SmolLM2's "smollm", say) keeps the base tokenizer's pre-tokenizer: GPT-2's
/// `ByteLevel` regex, or sentencepiece's `Metaspace`, whatever llama.cpp would split with.
fn split_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// Builds the tokenizer transformers builds for this GGUF metadata.
pub fn tokenizer_from_gguf(spec: &GgufTokenizerSpec) -> Result<Tokenizer> {
    check_spec(spec)?;
    let mut tokenizer = match spec.model.as_str() {
        "gpt2" => byte_level_base(spec)?,
        _ if is_gemma(&spec.architecture) => gemma_base(spec)?,
        _ => sentencepiece_base(spec)?,
    };
    add_typed_tokens(&mut tokenizer, spec)?;
    if let Some(regex) = spec.pre.as_deref().and_then(split_regex) {
        set_split_regex(&mut tokenizer, regex)?;
    }
    add_named_special_tokens(&mut tokenizer, spec)?;
    if let Some((add_bos, add_eos)) = bos_eos_flags(spec) {
        set_post_processor(&mut tokenizer, spec, add_bos, add_eos)?;
    }
    Ok(tokenizer)
}

fn tokenizer_error(message: impl Into<String>) -> EpsvecError {
    EpsvecError::Tokenizer(message.into())
}

/// Rejects metadata transformers would choke on (or silently truncate), before it can panic.
fn check_spec(spec: &GgufTokenizerSpec) -> Result<()> {
    if !matches!(spec.model.as_str(), "gpt2" | "llama") {
        return Err(tokenizer_error(format!(
            "GGUF tokenizer model {:?} is not supported; supported: gpt2 (byte-level BPE), llama (sentencepiece BPE)",
            spec.model
        )));
    }
    if !ARCHITECTURES.contains(&spec.architecture.as_str()) {
        return Err(tokenizer_error(format!(
            "GGUF architecture {:?} is not supported for tokenizer conversion; supported: {}",
            spec.architecture,
            ARCHITECTURES.join(", ")
        )));
    }
    let vocab_size = spec.tokens.len();
    if vocab_size == 0 {
        return Err(tokenizer_error("GGUF tokenizer.ggml.tokens is empty"));
    }
    check_length("token_type", spec.token_types.as_ref().map(Vec::len), vocab_size)?;
    check_length("scores", spec.scores.as_ref().map(Vec::len), vocab_size)?;
    if spec.scores.iter().flatten().any(|score| score.is_nan()) {
        return Err(tokenizer_error("GGUF tokenizer.ggml.scores contains NaN"));
    }
    for (name, id) in named_ids(spec) {
        if let Some(id) = id.filter(|&id| id as usize >= vocab_size) {
            return Err(tokenizer_error(format!(
                "GGUF tokenizer.ggml.{name}_token_id is {id}, but the vocabulary has {vocab_size} tokens"
            )));
        }
    }
    Ok(())
}

fn check_length(key: &str, length: Option<usize>, vocab_size: usize) -> Result<()> {
    match length {
        Some(length) if length != vocab_size => Err(tokenizer_error(format!(
            "GGUF tokenizer.ggml.{key} has {length} entries, but tokenizer.ggml.tokens has {vocab_size}"
        ))),
        _ => Ok(()),
    }
}

/// bos, eos, unk, pad: the order of transformers' `SPECIAL_TOKENS_ATTRIBUTES`, which is the
/// order they are added in, and so the order in which missing ones get new ids.
fn named_ids(spec: &GgufTokenizerSpec) -> [(&'static str, Option<u32>); 4] {
    [("bos", spec.bos_id), ("eos", spec.eos_id), ("unknown", spec.unk_id), ("padding", spec.pad_id)]
}

fn token_at(spec: &GgufTokenizerSpec, id: Option<u32>) -> Option<&str> {
    id.map(|id| spec.tokens[id as usize].as_str())
}

/// `GPT2Tokenizer(vocab, merges)` as `byte_level_tokenizer` calls it.
fn byte_level_base(spec: &GgufTokenizerSpec) -> Result<Tokenizer> {
    let bpe = BPE::builder().continuing_subword_prefix(String::new()).end_of_word_suffix(String::new()).fuse_unk(false);
    let vocab = byte_level_vocab(&spec.tokens);
    let merges = parse_merges(&spec.merges)?;
    if merges.is_empty() {
        return Err(tokenizer_error("GGUF byte-level (gpt2) tokenizer has no tokenizer.ggml.merges"));
    }
    let mut tokenizer = Tokenizer::new(build_bpe(bpe, vocab, merges)?);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    // `GPT2Tokenizer`'s own defaults for unk/bos/eos, registered before the file's tokens are.
    finish_base(&mut tokenizer, &["<|endoftext|>"])?;
    Ok(tokenizer)
}

/// `LlamaTokenizer(vocab, merges)` as `sentencepiece_tokenizer` calls it: BPE with byte
/// fallback, `Metaspace` prepending "▁" to the first piece only (`legacy=False`), and a decoder
/// that strips that one leading space again.
fn sentencepiece_base(spec: &GgufTokenizerSpec) -> Result<Tokenizer> {
    let bpe = BPE::builder().fuse_unk(true).byte_fallback(true);
    let vocab = token_ids(spec.tokens.iter().cloned());
    // No merges in the file (llama.cpp writes none for sentencepiece): recover them from the scores.
    let merges = if spec.merges.is_empty() {
        let scores = spec.scores.as_ref().ok_or_else(|| {
            tokenizer_error("GGUF sentencepiece (llama) tokenizer has neither tokenizer.ggml.merges nor scores")
        })?;
        generate_merges(&spec.tokens, scores, &vocab)
    } else {
        parse_merges(&spec.merges)?
    };
    let mut tokenizer = Tokenizer::new(build_bpe(bpe, vocab, merges)?);
    tokenizer.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, false)));
    let replace = Replace::new("▁", " ").map_err(|e| tokenizer_error(e.to_string()))?;
    tokenizer.with_decoder(Some(DecoderSequence::new(vec![
        replace.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
        Strip::new(' ', 1, 0).into(),
    ])));
    // `LlamaTokenizer`'s own defaults, in bos, eos, unk order.
    finish_base(&mut tokenizer, &["<s>", "</s>", "<unk>"])?;
    Ok(tokenizer)
}

/// `GemmaTokenizer(vocab, merges)` as `gemma_tokenizer` calls it. Two fixes first: tokens of
/// two or more blanks, stored as real spaces, are respelled as that many "▁"; and the merges
/// (the file has none) are ranked by the tokens' order in the file, not by their scores. Then
/// Gemma's pipeline: spaces become "▁" in a normalizer (no prefix space), BPE with byte
/// fallback, and a decoder that maps "▁" back without stripping anything.
fn gemma_base(spec: &GgufTokenizerSpec) -> Result<Tokenizer> {
    let respelled: Vec<String> = spec
        .tokens
        .iter()
        .map(|t| if t.contains(' ') && t.trim().is_empty() { "▁".repeat(t.chars().count()) } else { t.clone() })
        .collect();
    let vocab = token_ids(respelled.iter().cloned());
    let positions: Vec<f32> = (0..respelled.len()).map(|i| -(i as f32)).collect(); // exact below 2^24
    let merges = generate_merges(&respelled, &positions, &vocab);
    let bpe = BPE::builder().fuse_unk(true).byte_fallback(true).unk_token("<unk>".into());
    let mut tokenizer = Tokenizer::new(build_bpe(bpe, vocab, merges)?);
    let spaces = Replace::new(" ", "▁").map_err(|e| tokenizer_error(e.to_string()))?;
    tokenizer.with_normalizer(Some(spaces)).map_err(|e| tokenizer_error(e.to_string()))?;
    let split = Split::new(SplitPattern::String(" ".into()), SplitDelimiterBehavior::MergedWithPrevious, false)
        .map_err(|e| tokenizer_error(e.to_string()))?;
    tokenizer.with_pre_tokenizer(Some(split));
    let replace = Replace::new("▁", " ").map_err(|e| tokenizer_error(e.to_string()))?;
    tokenizer.with_decoder(Some(DecoderSequence::new(vec![
        replace.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ])));
    // `GemmaTokenizer`'s own defaults, in bos, eos, unk, pad, mask order.
    finish_base(&mut tokenizer, &["<bos>", "<eos>", "<unk>", "<pad>", "<mask>"])?;
    Ok(tokenizer)
}

/// What `TokenizersBackend.__init__` does for a base tokenizer: registers its default special
/// tokens (as special added tokens, appended if the vocabulary lacks them) and installs a
/// post-processor that adds nothing.
fn finish_base(tokenizer: &mut Tokenizer, defaults: &[&str]) -> Result<()> {
    add_tokens(tokenizer, defaults.iter().map(|token| AddedToken::from(*token, true)))?;
    tokenizer.with_post_processor(Some(template("$A:0", "$A:0 $B:1", vec![])?));
    Ok(())
}

/// `{token: index}`: a repeated token keeps its last index, as in a Python dict.
fn token_ids(tokens: impl Iterator<Item = String>) -> Vocab {
    tokens.zip(0u32..).collect()
}

/// The vocabulary in the byte alphabet. A token already spelled in it is kept; any other (a raw
/// "<|im start|>" with a space, say) is respelled byte by byte, as `byte_level_tokenizer` does.
fn byte_level_vocab(tokens: &[String]) -> Vocab {
    let respell = |token: &String| match in_byte_alphabet(token) {
        true => token.clone(),
        false => token.bytes().map(byte_char).collect(),
    };
    token_ids(tokens.iter().map(respell))
}

/// GPT-2's byte-to-character table (`convert_slow_tokenizer.bytes_to_unicode`): the 188
/// printable bytes stand for themselves, the other 68 map, in order, to U+0100..=U+0143.
fn byte_char(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(byte) {
        return char::from(byte);
    }
    let shifted = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(0x100 + shifted).expect("U+0100..=U+0143 are chars")
}

/// Whether every character of `token` is one of the 256 that `byte_char` produces.
fn in_byte_alphabet(token: &str) -> bool {
    token.chars().all(|c| matches!(c as u32, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF | 0x100..=0x143))
}

/// "a b" into ("a", "b"), as `tuple(merge.split(" "))`; anything but exactly two parts is an error.
fn parse_merges(merges: &[String]) -> Result<Vec<(String, String)>> {
    merges
        .iter()
        .enumerate()
        .map(|(index, merge)| match merge.split(' ').collect::<Vec<_>>()[..] {
            [left, right] => Ok((left.to_owned(), right.to_owned())),
            _ => Err(tokenizer_error(format!(
                "GGUF tokenizer.ggml.merges[{index}] is {merge:?}; expected two tokens separated by one space"
            ))),
        })
        .collect()
}

/// Merges recovered from the vocabulary when the file has none: `generate_merges` in
/// `tokenization_utils_base.py`. Every split of a token into two vocabulary tokens is a merge,
/// ranked by the token's score, highest first, ties broken by the pieces' lengths (longest
/// first) and then by vocabulary order (stable sorts, as in Python).
fn generate_merges(tokens: &[String], scores: &[f32], vocab: &Vocab) -> Vec<(String, String)> {
    let mut merges = Vec::new();
    for (token, score) in scores_in_dict_order(tokens, scores) {
        let mut local: Vec<(&str, &str, f32)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| (&token[..at], &token[at..], score))
            .filter(|(left, right, _)| vocab.contains_key(*left) && vocab.contains_key(*right))
            .collect();
        local.sort_by_key(|(left, right, _)| (vocab[*left], vocab[*right]));
        merges.extend(local);
    }
    let key = |(left, right, score): &(&str, &str, f32)| (*score, left.chars().count(), right.chars().count());
    merges.sort_by(|a, b| key(b).partial_cmp(&key(a)).expect("scores were checked for NaN"));
    merges.into_iter().map(|(left, right, _)| (left.to_owned(), right.to_owned())).collect()
}

/// `dict(zip(tokens, scores))`: a repeated token keeps its first position but its last score.
fn scores_in_dict_order<'a>(tokens: &'a [String], scores: &[f32]) -> Vec<(&'a str, f32)> {
    let mut position: HashMap<&str, usize> = HashMap::new();
    let mut ordered: Vec<(&str, f32)> = Vec::new();
    for (token, &score) in tokens.iter().zip(scores) {
        match position.get(token.as_str()) {
            Some(&at) => ordered[at].1 = score,
            None => {
                position.insert(token, ordered.len());
                ordered.push((token, score));
            }
        }
    }
    ordered
}

/// Builds the BPE model after checking what `BpeBuilder::build` would otherwise panic on (a
/// merged token longer than any vocabulary token) or reject with a vaguer message.
fn build_bpe(builder: BpeBuilder, vocab: Vocab, merges: Vec<(String, String)>) -> Result<BPE> {
    for (index, (left, right)) in merges.iter().enumerate() {
        for piece in [left.clone(), right.clone(), format!("{left}{right}")] {
            if !vocab.contains_key(&piece) {
                return Err(tokenizer_error(format!(
                    "GGUF merge {index} ({left:?} + {right:?}) uses {piece:?}, which is not in the vocabulary"
                )));
            }
        }
    }
    builder.vocab_and_merges(vocab, merges).build().map_err(|e| tokenizer_error(format!("building BPE: {e}")))
}

/// `add_gguf_special_tokens`: CONTROL tokens become special added tokens, USER_DEFINED tokens
/// plain added tokens, so neither is cut into pieces.
///
/// In a byte-level vocabulary a CONTROL token spelled outside the byte alphabet is a llama.cpp
/// mislabel and is skipped; a USER_DEFINED one is kept only if its spelling is in the vocabulary.
fn add_typed_tokens(tokenizer: &mut Tokenizer, spec: &GgufTokenizerSpec) -> Result<()> {
    let Some(types) = &spec.token_types else {
        return Ok(());
    };
    let typed = |wanted: i32| spec.tokens.iter().zip(types).filter(move |(_, &kind)| kind == wanted).map(|(t, _)| t);
    let byte_level = spec.model == "gpt2";
    let control = typed(CONTROL)
        .filter(|token| !byte_level || in_byte_alphabet(token))
        .map(|token| AddedToken::from(token.as_str(), true).normalized(false));
    add_special_tokens(tokenizer, control)?;
    let vocab = tokenizer.get_vocab(true);
    let user_defined = typed(USER_DEFINED)
        .filter(|token| vocab.contains_key(token.as_str()))
        .map(|token| AddedToken::from(token.as_str(), false).normalized(false));
    add_tokens(tokenizer, user_defined)
}

/// `set_split_regex`: split with the vocabulary's regex, then map to bytes without splitting again.
fn set_split_regex(tokenizer: &mut Tokenizer, regex: &str) -> Result<()> {
    let split = Split::new(SplitPattern::Regex(regex.to_owned()), SplitDelimiterBehavior::Isolated, false)
        .map_err(|e| tokenizer_error(format!("split regex: {e}")))?;
    let byte_level = ByteLevel::new(false, true, false);
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![split.into(), byte_level.into()])));
    Ok(())
}

/// What the `AutoTokenizer` class does with the file's bos/eos/unk/pad tokens.
///
/// `TokenizersBackend.__init__` registers each one not yet an added token as a special added
/// token. `Qwen2Tokenizer.__init__` then re-adds all of them as special, which turns a
/// USER_DEFINED token used as, say, pad into a special one.
fn add_named_special_tokens(tokenizer: &mut Tokenizer, spec: &GgufTokenizerSpec) -> Result<()> {
    let named = named_tokens(spec);
    let added: HashSet<String> = tokenizer.get_added_tokens_decoder().into_values().map(|t| t.content).collect();
    let missing = named.iter().filter(|token| !added.contains(**token));
    add_tokens(tokenizer, missing.map(|token| AddedToken::from(*token, true)))?;
    if marks_named_tokens_special(&spec.architecture) {
        add_tokens(tokenizer, named.iter().map(|token| AddedToken::from(*token, true)))?;
    }
    Ok(())
}

/// Whether `AutoTokenizer` picks `Qwen2Tokenizer` for this architecture (`TokenizersBackend` otherwise).
fn marks_named_tokens_special(architecture: &str) -> bool {
    matches!(architecture, "qwen2" | "qwen3")
}

/// bos, eos, unk, pad as strings, each once, in that order.
fn named_tokens(spec: &GgufTokenizerSpec) -> Vec<&str> {
    let mut tokens: Vec<&str> = Vec::new();
    for (_, id) in named_ids(spec) {
        if let Some(token) = token_at(spec, id).filter(|token| !tokens.contains(token)) {
            tokens.push(token);
        }
    }
    tokens
}

/// `(add_bos, add_eos)` when the file states either, which makes transformers rebuild the
/// post-processor; `None` leaves the base one, which adds nothing. A "llama" (sentencepiece)
/// vocabulary that says nothing adds BOS, as llama.cpp does (`get_gguf_tokenizer`).
fn bos_eos_flags(spec: &GgufTokenizerSpec) -> Option<(bool, bool)> {
    let add_bos = spec.add_bos.or((spec.model == "llama").then_some(true));
    (add_bos.is_some() || spec.add_eos.is_some()).then(|| (add_bos.unwrap_or(false), spec.add_eos.unwrap_or(false)))
}

/// `TokenizersBackend.update_post_processor`, templates spelled exactly as it spells them.
fn set_post_processor(tokenizer: &mut Tokenizer, spec: &GgufTokenizerSpec, add_bos: bool, add_eos: bool) -> Result<()> {
    // A flag without its token is dropped.
    let bos = token_at(spec, spec.bos_id).filter(|_| add_bos);
    let eos = token_at(spec, spec.eos_id).filter(|_| add_eos);
    let single = format!(
        "{}$A:0{}",
        bos.map(|t| format!("{t}:0 ")).unwrap_or_default(),
        eos.map(|t| format!(" {t}:0")).unwrap_or_default()
    );
    let pair = format!(
        "{single}{} $B:1{}",
        bos.map(|t| format!(" {t}:1")).unwrap_or_default(),
        eos.map(|t| format!(" {t}:1")).unwrap_or_default()
    );
    let mut special_tokens = Vec::new();
    for token in bos.into_iter().chain(eos) {
        let id = tokenizer.token_to_id(token).ok_or_else(|| tokenizer_error(format!("no id for {token:?}")))?;
        special_tokens.push((token.to_owned(), id));
    }
    tokenizer.with_post_processor(Some(template(&single, &pair, special_tokens)?));
    Ok(())
}

fn template(single: &str, pair: &str, special_tokens: Vec<(String, u32)>) -> Result<TemplateProcessing> {
    let invalid = |e: String| tokenizer_error(format!("post-processor template {single:?}: {e}"));
    TemplateProcessing::builder()
        .try_single(single)
        .map_err(invalid)?
        .try_pair(pair)
        .map_err(invalid)?
        .special_tokens(special_tokens)
        .build()
        .map_err(|e| invalid(e.to_string()))
}

fn add_tokens(tokenizer: &mut Tokenizer, tokens: impl IntoIterator<Item = AddedToken>) -> Result<()> {
    tokenizer.add_tokens(tokens).map(drop).map_err(|e| tokenizer_error(format!("adding tokens: {e}")))
}

fn add_special_tokens(tokenizer: &mut Tokenizer, tokens: impl IntoIterator<Item = AddedToken>) -> Result<()> {
    tokenizer.add_special_tokens(tokens).map(drop).map_err(|e| tokenizer_error(format!("adding special tokens: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level vocabulary small enough to read: "hello" merges up from its letters.
    fn tiny_gpt2() -> GgufTokenizerSpec {
        let tokens = ["<|endoftext|>", "<|im_start|>", "h", "e", "l", "o", "Ġ", "he", "ll", "hell", "hello", "Ġhello"];
        GgufTokenizerSpec {
            architecture: "llama".into(),
            model: "gpt2".into(),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            token_types: Some(vec![3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            merges: ["h e", "l l", "he ll", "hell o", "Ġ hello"].iter().map(|m| m.to_string()).collect(),
            bos_id: Some(1),
            eos_id: Some(0),
            ..Default::default()
        }
    }

    fn error_of(spec: &GgufTokenizerSpec) -> String {
        tokenizer_from_gguf(spec).expect_err("spec should be rejected").to_string()
    }

    #[test]
    fn tiny_byte_level_vocabulary_encodes_and_decodes() {
        let tokenizer = tokenizer_from_gguf(&tiny_gpt2()).unwrap();
        let encoding = tokenizer.encode("<|im_start|>hello hello", true).unwrap();
        assert_eq!(encoding.get_ids(), [1, 10, 11]);
        assert_eq!(tokenizer.decode(&[1, 10, 11], true).unwrap(), "hello hello");
    }

    #[test]
    fn add_bos_flag_rebuilds_the_post_processor() {
        let spec = GgufTokenizerSpec { add_bos: Some(true), ..tiny_gpt2() };
        let tokenizer = tokenizer_from_gguf(&spec).unwrap();
        assert_eq!(tokenizer.encode("hello", true).unwrap().get_ids(), [1, 10]);
        assert_eq!(tokenizer.encode("hello", false).unwrap().get_ids(), [10]);
    }

    #[test]
    fn byte_table_matches_gpt2() {
        assert_eq!(byte_char(b'A'), 'A');
        assert_eq!(byte_char(0), '\u{100}');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(0xAD), '\u{143}');
        assert!((0..=255).all(|b| in_byte_alphabet(&byte_char(b).to_string())));
        assert!(!in_byte_alphabet("a b"));
    }

    /// Expected output from transformers' `generate_merges` on the same input; "bc" is listed
    /// twice to check that it keeps its first position but its last score.
    #[test]
    fn generated_merges_match_transformers() {
        let tokens: Vec<String> =
            ["<unk>", "▁", "a", "b", "c", "ab", "bc", "▁a", "abc", "▁ab", "bc", "cab"].map(String::from).to_vec();
        let scores = [0., -1., -2., -3., -4., -5., -6., -5., -7., -8., -9., -5.];
        let vocab = token_ids(tokens.iter().cloned());
        let expected =
            [("c", "ab"), ("a", "b"), ("▁", "a"), ("ab", "c"), ("a", "bc"), ("▁a", "b"), ("▁", "ab"), ("b", "c")];
        let expected: Vec<(String, String)> = expected.iter().map(|(l, r)| (l.to_string(), r.to_string())).collect();
        assert_eq!(generate_merges(&tokens, &scores, &vocab), expected);
    }

    #[test]
    fn rejects_unsupported_model_and_architecture() {
        let bert = GgufTokenizerSpec { model: "bert".into(), ..tiny_gpt2() };
        assert!(error_of(&bert).contains("GGUF tokenizer model \"bert\" is not supported; supported: gpt2"));
        let gemma = GgufTokenizerSpec { architecture: "gemma".into(), ..tiny_gpt2() };
        assert!(error_of(&gemma).contains("architecture \"gemma\""));
    }

    #[test]
    fn rejects_bad_metadata() {
        let empty = GgufTokenizerSpec { tokens: vec![], token_types: None, ..tiny_gpt2() };
        assert!(error_of(&empty).contains("empty"));
        let far_bos = GgufTokenizerSpec { bos_id: Some(12), ..tiny_gpt2() };
        assert!(error_of(&far_bos).contains("bos_token_id is 12"));
        let short_types = GgufTokenizerSpec { token_types: Some(vec![1]), ..tiny_gpt2() };
        assert!(error_of(&short_types).contains("token_type has 1 entries"));
        let no_merges = GgufTokenizerSpec { merges: vec![], ..tiny_gpt2() };
        assert!(error_of(&no_merges).contains("no tokenizer.ggml.merges"));
    }

    #[test]
    fn rejects_malformed_merges() {
        for merge in ["he", "h  e", "h e l"] {
            let spec = GgufTokenizerSpec { merges: vec![merge.into()], ..tiny_gpt2() };
            assert!(error_of(&spec).contains("expected two tokens separated by one space"), "{merge}");
        }
        let unknown = GgufTokenizerSpec { merges: vec!["h x".into()], ..tiny_gpt2() };
        assert!(error_of(&unknown).contains("\"x\", which is not in the vocabulary"));
        // Both halves are known but their join is longer than any token: `BpeBuilder` would panic.
        let too_long = GgufTokenizerSpec { merges: vec!["Ġhello Ġhello".into()], ..tiny_gpt2() };
        assert!(error_of(&too_long).contains("\"ĠhelloĠhello\", which is not in the vocabulary"));
    }

    #[test]
    fn sentencepiece_needs_merges_or_finite_scores() {
        let spm = GgufTokenizerSpec { model: "llama".into(), merges: vec![], ..tiny_gpt2() };
        assert!(error_of(&spm).contains("neither tokenizer.ggml.merges nor scores"));
        let nan = GgufTokenizerSpec { scores: Some(vec![f32::NAN; 12]), ..spm };
        assert!(error_of(&nan).contains("NaN"));
    }
}

/// Reads the `tokenizer.ggml.*` keys of a GGUF file.
pub fn spec_from_metadata(file: &GgufFile) -> Result<GgufTokenizerSpec> {
    let corrupt = |what: &str| EpsvecError::corrupt(file.path(), format!("GGUF tokenizer metadata: {what}"));
    let get = |key: &str| file.get(&format!("tokenizer.ggml.{key}"));
    let strings = |key: &str| -> Result<Option<Vec<String>>> {
        match get(key) {
            None => Ok(None),
            Some(v) => v
                .as_string_list()
                .map(|l| Some(l.into_iter().map(String::from).collect()))
                .ok_or_else(|| corrupt(&format!("{key} is not a list of strings"))),
        }
    };
    let id = |key: &str| get(key).and_then(|v| v.as_u64()).map(|v| v as u32);
    let model =
        get("model").and_then(|v| v.as_str()).ok_or_else(|| corrupt("tokenizer.ggml.model is missing"))?.to_string();
    let tokens = strings("tokens")?.ok_or_else(|| corrupt("tokenizer.ggml.tokens is missing"))?;
    let token_types = match get("token_type") {
        None => None,
        Some(v) => Some(
            v.as_array()
                .and_then(|a| a.iter().map(|t| t.as_i64().map(|x| x as i32)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| corrupt("token_type is not a list of integers"))?,
        ),
    };
    let scores = match get("scores") {
        None => None,
        Some(v) => Some(
            v.as_array()
                .and_then(|a| a.iter().map(|s| s.as_f64().map(|x| x as f32)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| corrupt("scores is not a list of numbers"))?,
        ),
    };
    Ok(GgufTokenizerSpec {
        architecture: file.get("general.architecture").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
        model,
        pre: get("pre").and_then(|v| v.as_str()).map(String::from),
        tokens,
        token_types,
        merges: strings("merges")?.unwrap_or_default(),
        scores,
        bos_id: id("bos_token_id"),
        eos_id: id("eos_token_id"),
        unk_id: id("unknown_token_id"),
        pad_id: id("padding_token_id"),
        add_bos: get("add_bos_token").and_then(|v| v.as_bool()),
        add_eos: get("add_eos_token").and_then(|v| v.as_bool()),
    })
}
