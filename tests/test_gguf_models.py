"""The engine's GGUF loading path on tiny random-weight models of every GGUF
architecture it runs (llama, qwen2, qwen3, gemma2, gemma3, olmo2; Mistral
checkpoints convert to "llama", OLMo 3 to "olmo2"), against HF transformers
loading the same file (where transformers reads that architecture from GGUF:
not OLMo), and against the safetensors checkpoint each file was converted from.

The files are written here with gguf-py the way llama.cpp's
`convert_hf_to_gguf.py` writes them (metadata keys, gpt2-style BPE vocab,
tensor names, q/k rows permuted for "llama", rope_freqs for llama3 rope),
in three flavours per model:

- "f32":    every tensor F32, so the file holds exactly the checkpoint's weights;
- "q8_0":   `--outtype q8_0`-like: 1-D tensors F32, matrices Q8_0 with a few
            F16 / BF16 ones mixed in;
- "lowbit": matrices cycling through Q4_0, Q4_1, Q5_0, Q5_1 (what
            `llama-quantize` produces), to exercise those dequantizers too.

transformers dequantizes the same bytes, so engine and transformers must agree
to float32 precision on every flavour.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import epsvec
from conftest import SENTENCES
from test_golden import TOL, assert_matches_hf

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType

# variant (conftest.tiny_config) -> general.architecture llama.cpp writes for it.
ARCH = {
    "llama": "llama",
    "llama3_rope": "llama",
    "mistral": "llama",  # llama.cpp converts MistralForCausalLM as LlamaModel
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "olmo2": "olmo2",
    "olmo3": "olmo2",  # llama.cpp's Olmo2Model converts both, OLMo 3 with its window and layer pattern
}
# transformers' GGUF loader has no "olmo2".
HF_READS_GGUF = [v for v in ARCH if ARCH[v] != "olmo2"]
KINDS = ["f32", "q8_0", "lowbit"]

TOKENIZER_TEXTS = SENTENCES + [
    "  leading and   inner  spaces ",
    "tabs\tand\nnewlines\n\n",
    "Café naïve — 東京 🎬 12345678 don't I'LL",
    "<|im_start|>user\nhi<|im_end|><|endoftext|>",
]


# --------------------------------------------------------------------------
# A minimal convert_hf_to_gguf.py for the tiny Llama-family checkpoints.
# --------------------------------------------------------------------------

_LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_TOP_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


# Gemma's four norms per block (llama.cpp's Gemma2Model / Gemma3Model).
_GEMMA_LAYER_TENSORS = dict(_LAYER_TENSORS, post_attention_layernorm="post_attention_norm",
                            pre_feedforward_layernorm="ffn_norm", post_feedforward_layernorm="post_ffw_norm")
GEMMA = ("gemma2", "gemma3")
# OLMo's two post-norms (llama.cpp's Olmo2Model); it has no pre-norms.
_OLMO_LAYER_TENSORS = dict(_LAYER_TENSORS, post_attention_layernorm="post_attention_norm",
                           post_feedforward_layernorm="post_ffw_norm")


def gguf_tensor_name(hf_name: str, arch: str = "llama") -> str:
    if hf_name in _TOP_TENSORS:
        return _TOP_TENSORS[hf_name]
    layer, part = hf_name.removeprefix("model.layers.").split(".", 1)
    module, suffix = part.rsplit(".", 1)
    table = _GEMMA_LAYER_TENSORS if arch in GEMMA else _OLMO_LAYER_TENSORS if arch == "olmo2" else _LAYER_TENSORS
    return f"blk.{layer}.{table[module]}.{suffix}"


def llama_permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute` (rotary halves -> interleaved pairs)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(rope: dict, head_dim: int) -> np.ndarray:
    """`LlamaModel.generate_extra_tensors`: the rope_freqs.weight tensor."""
    base = rope["rope_theta"]
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old_ctx = rope["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def matrix_type(kind: str, name: str, index: int):
    """The GGML type of 2-D tensor `name` (the index-th matrix) in a `kind` file."""
    if kind == "f32":
        return Q.F32
    if kind == "q8_0":
        if name == "token_embd.weight" or name == "blk.1.attn_v.weight" or name == "blk.0.ffn_down.weight":
            return Q.F16
        if name == "blk.2.attn_output.weight":
            return Q.BF16
        return Q.Q8_0
    if kind == "lowbit":
        return [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1][index % 4]
    raise ValueError(kind)


def _vocab(src: Path, vocab_size: int):
    """`TextModel.get_vocab_base` for a byte-level BPE tokenizer.json."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src)
    reverse = {i: t for t, i in tokenizer.vocab.items()}
    added = tokenizer.get_added_vocab()
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        tokens.append(token)
        if token in added:
            special = tokenizer.added_tokens_decoder[i].special or (token.startswith("<|") and token.endswith("|>"))
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def write_gguf(src: Path, out: Path, arch: str, kind: str, name: str | None = None) -> Path:
    """Convert the HF checkpoint `src` to `out` the way convert_hf_to_gguf.py does."""
    from safetensors.numpy import load_file

    cfg = json.loads((src / "config.json").read_text())
    rope = cfg.get("rope_parameters") or {}
    rope = rope.get("full_attention", rope)  # per layer type (OLMo 3): the global layers' base
    n_head, n_head_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head

    w = gguf.GGUFWriter(str(out), arch)
    w.add_name(name or src.name)
    # TextModel.set_gguf_parameters
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(rope.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    if cfg.get("head_dim") is not None:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}.get(
        kind, gguf.LlamaFileType.MOSTLY_Q4_0))
    if arch == "llama":  # LlamaModel.set_gguf_parameters
        w.add_vocab_size(cfg["vocab_size"])
        w.add_rope_dimension_count(head_dim)
    if arch in GEMMA:  # Gemma2Model / Gemma3Model.set_gguf_parameters
        w.add_sliding_window(cfg["sliding_window"])
    if arch == "olmo2" and "sliding_window" in cfg:  # Olmo2Model.set_gguf_parameters (OLMo 3)
        w.add_sliding_window(cfg["sliding_window"])
        w.add_sliding_window_pattern([t == "sliding_attention" for t in cfg["layer_types"]])
    if arch == "gemma2":
        w.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
    # _set_vocab_gpt2. The tiny tokenizer's pre-tokenizer is GPT-2's ByteLevel
    # regex, llama.cpp's "gpt-2" pre type.
    tokens, types = _vocab(src, cfg["vocab_size"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    gguf.SpecialVocab(src, load_merges=True).add_to_gguf(w, quiet=True)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    if arch == "llama" and rope.get("rope_type") == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(rope, head_dim))
    index = 0
    for hf_name, tensor in load_file(src / "model.safetensors").items():
        tensor = tensor.astype(np.float32)
        if arch in GEMMA:  # Gemma2Model.modify_tensors: tied head dropped, norms stored as 1 + w
            if hf_name == "lm_head.weight":
                continue
            if hf_name.endswith("norm.weight"):
                tensor = tensor + 1
        if arch == "llama":  # LlamaModel.modify_tensors
            if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                tensor = llama_permute(tensor, n_head, n_head)
            if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                tensor = llama_permute(tensor, n_head, n_head_kv)
        gname = gguf_tensor_name(hf_name, arch)
        if tensor.ndim == 1:
            w.add_tensor(gname, tensor)
            continue
        qtype = matrix_type(kind, gname, index)
        index += 1
        data = gguf.quants.quantize(tensor, qtype)
        w.add_tensor(gname, data, raw_dtype=None if qtype in (Q.F32, Q.F16) else qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ggufs(tiny_models, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """(variant, kind) -> a .gguf alone in its own folder."""
    root = tmp_path_factory.mktemp("gguf")
    files = {}
    for variant, arch in ARCH.items():
        for kind in KINDS:
            folder = root / f"{variant}-{kind}"
            folder.mkdir()
            # The name llama.cpp would derive from the checkpoint's folder.
            name = f"tiny {variant}"
            files[variant, kind] = write_gguf(tiny_models[variant], folder / f"{variant}-{kind}.gguf", arch, kind, name)
    return files


@pytest.fixture(scope="module")
def engine_models(ggufs):
    cache = {}

    def get(variant, kind):
        if (variant, kind) not in cache:
            cache[variant, kind] = epsvec.load_model(ggufs[variant, kind], device="cpu")
        return cache[variant, kind]

    return get


def hf_from_gguf(path: Path, variant: str):
    from transformers import AutoModelForCausalLM

    # transformers' GGUF config mapping for qwen3 drops `qwen3.attention.key_length`
    # and falls back to Qwen3Config's head_dim=128; llama.cpp (and the engine)
    # read it. Give transformers the head_dim the file declares.
    extra = {"head_dim": 32} if variant == "qwen3" else {}
    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32, **extra).eval()


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(ARCH))
def test_gguf_metadata_is_read(engine_models, tiny_models, variant):
    model = engine_models(variant, "q8_0")
    hf_cfg = json.loads((tiny_models[variant] / "config.json").read_text())
    cfg = model.config
    assert cfg.format == "gguf"
    assert cfg.num_layers == hf_cfg["num_hidden_layers"]
    assert cfg.hidden_size == hf_cfg["hidden_size"]
    assert cfg.intermediate_size == hf_cfg["intermediate_size"]
    assert (cfg.num_heads, cfg.num_kv_heads) == (hf_cfg["num_attention_heads"], hf_cfg["num_key_value_heads"])
    assert cfg.head_dim == (hf_cfg.get("head_dim") or hf_cfg["hidden_size"] // hf_cfg["num_attention_heads"])
    assert cfg.vocab_size == hf_cfg["vocab_size"]
    rope = hf_cfg["rope_parameters"]
    assert cfg.rope_theta == rope.get("full_attention", rope)["rope_theta"]
    assert cfg.tie_word_embeddings == hf_cfg["tie_word_embeddings"]
    assert cfg.bos_token_id == 0 and cfg.eos_token_ids == [0]
    assert cfg.architecture == hf_cfg["architectures"][0].replace("Mistral", "Llama")


@pytest.mark.parametrize("variant", HF_READS_GGUF)
def test_gguf_tokenizer_matches_transformers(engine_models, ggufs, tiny_models, variant):
    from transformers import AutoTokenizer

    path = ggufs[variant, "q8_0"]
    hf_gguf_tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    hf_json_tok = AutoTokenizer.from_pretrained(tiny_models[variant])
    model = engine_models(variant, "q8_0")
    ours = model.tokenize(TOKENIZER_TEXTS)
    for text, got in zip(TOKENIZER_TEXTS, ours):
        assert got == hf_gguf_tok(text)["input_ids"], text
        # The conversion keeps the checkpoint's own tokenization.
        assert got == hf_json_tok(text)["input_ids"], text
    assert model.decode(ours[0]) == hf_gguf_tok.decode(ours[0]) == SENTENCES[0]


# llama3_rope is left out: transformers ignores the rope_freqs.weight tensor
# llama.cpp writes (its GGUF loader has no llama3 rope), so its model of that
# file is not the checkpoint's. The engine honours it; see the next test.
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", [v for v in HF_READS_GGUF if v != "llama3_rope"])
def test_gguf_matches_transformers_on_same_file(engine_models, ggufs, variant, kind):
    hf = hf_from_gguf(ggufs[variant, kind], variant)
    assert_matches_hf(engine_models(variant, kind), hf, SENTENCES, tol=TOL)


# mistral is left out: llama.cpp converts Mistral as "llama" and drops
# sliding_window (4 tokens in the tiny checkpoint), so the file is a different
# model than the checkpoint on texts longer than the window.
@pytest.mark.parametrize("variant", [v for v in ARCH if v != "mistral"])
def test_f32_gguf_matches_the_checkpoint(engine_models, tiny_models, variant):
    """An all-F32 GGUF holds the checkpoint's weights exactly (q/k permuted and
    back, for llama), so it must reproduce transformers on the safetensors."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tiny_models[variant], dtype=torch.float32).eval()
    assert_matches_hf(engine_models(variant, "f32"), hf, SENTENCES, tol=TOL)


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("variant", [v for v in ARCH if v != "mistral"])
def test_q8_0_gguf_is_close_to_the_checkpoint(engine_models, tiny_models, variant):
    """Q8_0 / F16 / BF16 rounding moves these random-weight models' residual
    stream by 1-5% (relative L2 per layer); a wrong q/k permutation, block
    layout or scale gives 50-120%. (Low-bit files are checked only against
    transformers on the same bytes: Q4/Q5 rounding alone moves them 30-60%.)"""
    reference = epsvec.load_model(tiny_models[variant], device="cpu")
    ref_states = reference.hidden_states(SENTENCES, pool=None)
    ref_logits = reference.logits(SENTENCES)
    model = engine_models(variant, "q8_0")
    states = model.hidden_states(SENTENCES, pool=None)
    logits = model.logits(SENTENCES)
    for i in range(len(SENTENCES)):
        for layer in range(states[i].shape[1]):
            err = _rel_err(states[i][:, layer], ref_states[i][:, layer])
            assert err < 0.1, f"text {i}, layer {layer}: relative error {err:.2e}"
        err = _rel_err(logits[i], ref_logits[i])
        assert err < 0.1, f"text {i}, logits: relative error {err:.2e}"


def test_llama_gguf_with_biases_matches_the_checkpoint(tiny_models, tmp_path):
    """llama.cpp writes a biased Llama's biases (q/k ones permuted like the
    weights) and its "llama" graph adds them; the engine must not drop them."""
    from transformers import AutoModelForCausalLM

    src = tiny_models["llama_tied_bias"]
    path = write_gguf(src, tmp_path / "biased.gguf", "llama", "f32")
    hf = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    assert_matches_hf(epsvec.load_model(path, device="cpu"), hf, SENTENCES, tol=TOL)


@pytest.mark.parametrize("arch", GEMMA)
def test_gemma_f32_gguf_matches_the_checkpoint(arch, tmp_path):
    """Gemma 2 and 3 from GGUF (llama.cpp's names for the four norms, norms
    stored as 1 + w, the soft-caps and sliding window in metadata) against
    transformers on the checkpoint the file was converted from. The tiny
    checkpoints use what a GGUF cannot state at transformers' defaults
    (query_pre_attn_scalar, the layer pattern, Gemma 3's local RoPE base)."""
    import transformers as tf
    from transformers import AutoModelForCausalLM

    from conftest import TINY, _tokenizer_json

    tokenizer = _tokenizer_json(300)
    common = dict(TINY, vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0, pad_token_id=0, head_dim=16,
                  sliding_window=4)
    config = (tf.Gemma2Config(**common, attn_logit_softcapping=2.0, final_logit_softcapping=3.0) if arch == "gemma2"
              else tf.Gemma3TextConfig(**common))
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2 if p.ndim > 1 else 0.5)
    src = tmp_path / "hf"
    model.save_pretrained(src)
    tokenizer.save_pretrained(src)
    path = write_gguf(src, tmp_path / f"{arch}.gguf", arch, "f32")
    engine = epsvec.load_model(path, device="cpu")
    assert engine.config.architecture == {"gemma2": "Gemma2ForCausalLM", "gemma3": "Gemma3ForCausalLM"}[arch]
    hf = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    assert_matches_hf(engine, hf, SENTENCES, tol=TOL)
