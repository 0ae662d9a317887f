"""The engine's residual stream and logits against HF transformers on the
same weights (float32, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import epsvec
from conftest import SENTENCES, VARIANTS, build_tiny

TOL = dict(rtol=1e-4, atol=1e-4)


def hf_reference(hf_model, ids: list[int]):
    """Per-layer block outputs [n_tokens, n_layers, hidden] and logits for one
    unpadded text. The last block's output is read with a forward hook,
    because transformers returns it after the final norm."""
    captured = {}
    last = hf_model.model.layers[-1]
    handle = last.register_forward_hook(lambda m, a, out: captured.setdefault("last", out[0] if isinstance(out, tuple) else out))
    try:
        with torch.no_grad():
            out = hf_model(torch.tensor([ids]), output_hidden_states=True)
    finally:
        handle.remove()
    blocks = list(out.hidden_states[1:-1]) + [captured["last"]]
    states = torch.stack([h[0] for h in blocks], dim=1).float().numpy()
    return states, out.logits[0].float().numpy()


def assert_matches_hf(model: epsvec.Model, hf_model, texts: list[str], tol=TOL):
    ids = model.tokenize(texts)
    assert len({len(i) for i in ids}) > 1, "texts must differ in length so the batch is padded"
    ours = model.hidden_states(texts, pool=None, batch_size=len(texts))
    logits = model.logits(texts, batch_size=len(texts))
    for i, row in enumerate(ids):
        states, hf_logits = hf_reference(hf_model, row)
        np.testing.assert_allclose(ours[i], states, **tol, err_msg=f"hidden states, text {i}")
        np.testing.assert_allclose(logits[i], hf_logits, **tol, err_msg=f"logits, text {i}")
        pooled = model.hidden_states(texts[i], pool="mean")[0]
        np.testing.assert_allclose(pooled, states.mean(axis=0), **tol)
        last = model.hidden_states(texts[i], pool="last")[0]
        np.testing.assert_allclose(last, states[-1], **tol)


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_models_match_transformers(tiny_models, variant):
    from transformers import AutoModelForCausalLM

    path = tiny_models[variant]
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    model = epsvec.load_model(path, device="cpu")
    assert model.config.num_layers == 3
    # Long enough that Mistral's 4-token sliding window matters.
    assert_matches_hf(model, hf, SENTENCES)


def test_legacy_dialect_and_sharded_checkpoint(tmp_path):
    """Older checkpoints (rope_scaling + rope_theta, template in
    tokenizer_config.json) and sharded safetensors load identically."""
    from transformers import AutoModelForCausalLM

    path = build_tiny("llama3_rope", tmp_path / "m", shard=True, legacy_config=True)
    assert (path / "model.safetensors.index.json").is_file()
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    model = epsvec.load_model(path, device="cpu")
    assert model.config.chat_template and "im_start" in model.config.chat_template
    assert_matches_hf(model, hf, SENTENCES)


def test_padding_does_not_change_states(tiny_models):
    model = epsvec.load_model(tiny_models["qwen3"], device="cpu")
    batched = model.hidden_states(SENTENCES, pool=None, batch_size=4)
    for i, text in enumerate(SENTENCES):
        alone = model.hidden_states([text], pool=None)[0]
        np.testing.assert_allclose(batched[i], alone, **TOL)


def test_default_model_matches_transformers(default_model, hf_default, rotten_tomatoes):
    texts = rotten_tomatoes[:6]
    assert_matches_hf(default_model, hf_default, texts, tol=dict(rtol=1e-3, atol=1e-3))


def test_default_tokenizer_matches_transformers(default_model, default_gguf, rotten_tomatoes):
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(default_gguf.parent, gguf_file=default_gguf.name)
    texts = rotten_tomatoes[:300] + [
        "  leading and   inner  spaces ",
        "tabs\tand\nnewlines\n\n",
        "Café naïve — 東京 🎬 12345678 don't I'LL",
        "<|im_start|>user\nhi<|im_end|>",
    ]
    ours = default_model.tokenize(texts)
    for text, got in zip(texts, ours):
        assert got == hf_tok(text)["input_ids"], text
    assert default_model.decode(ours[0]) == hf_tok.decode(hf_tok(texts[0])["input_ids"])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_half_precision_matches_transformers(tiny_models, variant, dtype):
    """In bf16/f16 the families round differently (where RMSNorm scales, in
    which dtype RoPE rotates); matching transformers there checks each op's
    dtype, not just its math. Same libtorch kernels on both sides, so the
    agreement is near exact."""
    from transformers import AutoModelForCausalLM

    path = tiny_models[variant]
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    model = epsvec.load_model(path, device="cpu", dtype=dtype)
    for ids in model.tokenize(SENTENCES):
        with torch.no_grad():
            want = hf(torch.tensor([ids])).logits[0].float().numpy()
        got = model._engine.logits([ids], 1)[0]
        assert np.abs(got - want).max() <= 5e-3 * np.abs(want).max(), f"{variant} {dtype}"
