"""Generation against transformers `generate` (greedy, float32, CPU), with
and without steering, plus identities and the sampler's distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import epsvec
from conftest import SENTENCES

PROMPTS = [
    "The film opens with",
    "Critics agreed that the second half of this long, strange and ambitious movie",
    "My favourite scene is",
]


def hf_greedy(hf_model, model: epsvec.Model, prompts, max_new_tokens, hook=None):
    """transformers' greedy continuations of a left-padded batch (on the
    model's device), with an optional forward hook `(layer, fn)` on a decoder layer."""
    ids = model.tokenize(prompts)
    width = max(map(len, ids))
    pad = model.config.eos_token_ids[0] if model.config.eos_token_ids else 0
    input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in ids], device=hf_model.device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids], device=hf_model.device)
    handle = None
    if hook is not None:
        layer, fn = hook
        handle = hf_model.model.layers[layer].register_forward_hook(fn)
    try:
        with torch.no_grad():
            out = hf_model.generate(
                input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=pad, eos_token_id=model.config.eos_token_ids or None,
            )
    finally:
        if handle is not None:
            handle.remove()
    result = []
    for row in out[:, width:].tolist():
        cut = [t for t in row]
        for i, t in enumerate(row):
            if t in model.config.eos_token_ids:
                cut = row[:i]
                break
        result.append(cut)
    return result


def ours(model, prompts, max_new_tokens, **kwargs):
    return [g.token_ids for g in model.generate(prompts, max_new_tokens=max_new_tokens, temperature=0,
                                                return_ids=True, **kwargs)]


def adding_hook(vector: torch.Tensor, positions: str):
    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if positions == "last":
            hidden[:, -1, :] += vector
        elif positions == "all" or hidden.shape[1] == 1:  # "generated": decode steps only
            hidden += vector
        return output
    return hook


@pytest.fixture(scope="module")
def tiny(tiny_models):
    from transformers import AutoModelForCausalLM

    path = tiny_models["qwen2"]
    return epsvec.load_model(path, device="cpu"), AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_greedy_matches_transformers_on_default_model(default_model, hf_default):
    assert ours(default_model, PROMPTS, 24, batch_size=3) == hf_greedy(hf_default, default_model, PROMPTS, 24)


@pytest.mark.parametrize("variant", ["llama", "llama_tied_bias", "llama3_rope", "mistral", "qwen2", "qwen3", "gemma2",
                                     "gemma3", "olmo2", "olmo3"])
def test_greedy_matches_transformers_on_tiny_models(tiny_models, variant):
    """Batched, and one prompt at a time (which the Llama family decodes
    with the plain-Rust one-row step)."""
    from transformers import AutoModelForCausalLM

    path = tiny_models[variant]
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    model = epsvec.load_model(path, device="cpu")
    assert ours(model, SENTENCES, 12, batch_size=4) == hf_greedy(hf, model, SENTENCES, 12)
    for sentence in SENTENCES:
        assert ours(model, [sentence], 12) == hf_greedy(hf, model, [sentence], 12)


@pytest.mark.parametrize("positions", ["last", "all", "generated"])
def test_steered_greedy_matches_transformers_hook(default_model, hf_default, positions):
    layer, strength = 14, 8.0
    rng = np.random.default_rng(0)
    vector = rng.standard_normal(default_model.config.hidden_size).astype(np.float32)
    vector /= np.linalg.norm(vector)
    got = ours(default_model, PROMPTS, 16, steer={layer: vector}, strength=strength, positions=positions)
    hook = adding_hook(torch.from_numpy(vector * strength), positions)
    want = hf_greedy(hf_default, default_model, PROMPTS, 16, hook=(layer, hook))
    assert got == want
    for prompt in PROMPTS:  # one row: the plain-Rust step
        one = ours(default_model, [prompt], 16, steer={layer: vector}, strength=strength, positions=positions)
        assert one == hf_greedy(hf_default, default_model, [prompt], 16, hook=(layer, hook))
    assert got != ours(default_model, PROMPTS, 16), "the steering should change the text"


@pytest.mark.parametrize("positions", ["last", "all", "generated"])
def test_repeated_prompt_shares_its_prefill(default_model, hf_default, positions):
    """Copies of one prompt run its prefill once (then copy the KV cache);
    the tokens must equal transformers' and the one-row-at-a-time path."""
    vector = np.random.default_rng(2).standard_normal(default_model.config.hidden_size).astype(np.float32)
    vector *= 8.0 / np.linalg.norm(vector)
    prompts = [PROMPTS[1]] * 3
    got = ours(default_model, prompts, 12, steer={14: vector}, positions=positions, batch_size=3)
    want = hf_greedy(hf_default, default_model, prompts[:1], 12, hook=(14, adding_hook(torch.from_numpy(vector),
                                                                                       positions)))
    assert got == want * 3
    kw = dict(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=5, steer={14: vector}, positions=positions)
    sampled = default_model.generate(prompts, batch_size=3, **kw)
    assert sampled == default_model.generate(prompts, batch_size=1, **kw)
    assert len(set(sampled)) > 1, "each row keeps its own random stream"


def test_steering_identities(tiny):
    model, _ = tiny
    v = {1: np.random.default_rng(1).standard_normal(64).astype(np.float32)}
    plain = ours(model, SENTENCES, 10)
    assert ours(model, SENTENCES, 10, steer=v, strength=0.0) == plain
    scaled = ours(model, SENTENCES, 10, steer={1: v[1] * 3.0}, strength=1.0)
    assert ours(model, SENTENCES, 10, steer=v, strength=3.0) == scaled
    assert scaled != plain
    # A tuple of steers is their sum; per-prompt lists steer rows separately.
    half = {1: v[1] * 1.5}
    assert ours(model, SENTENCES, 10, steer=(half, half)) == scaled
    mixed = ours(model, SENTENCES, 10, steer=[{1: v[1] * 3.0}, None, None, {1: v[1] * 3.0}])
    assert mixed == [scaled[0], plain[1], plain[2], scaled[3]]


def test_kv_cache_decoding_equals_full_recomputation(default_model):
    prompt = PROMPTS[1]
    generated = ours(default_model, [prompt], 20)[0]
    prompt_ids = default_model.tokenize(prompt)[0]
    full = prompt_ids + generated
    text = default_model.decode(full)
    assert default_model.tokenize(text)[0] == full, "round trip needed to feed ids back as text"
    logits = default_model.logits(text)[0]
    recomputed = logits[len(prompt_ids) - 1 : -1].argmax(-1).tolist()
    assert recomputed == generated


def test_seed_reproduces_and_batching_does_not_matter(tiny):
    model, _ = tiny
    kw = dict(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=1234)
    a = model.generate(SENTENCES, batch_size=4, **kw)
    assert model.generate(SENTENCES, batch_size=4, **kw) == a
    assert model.generate(SENTENCES, batch_size=1, **kw) == a
    assert model.generate(SENTENCES, batch_size=4, **{**kw, "seed": 99}) != a


def test_streams_redraw_chosen_samples_as_they_came(tiny):
    model, _ = tiny
    kw = dict(max_new_tokens=8, temperature=1.0, seed=77)
    run = model.generate(["The film"] * 5, **kw)
    assert model.generate(["The film"] * 2, streams=[3, 1], **kw) == [run[3], run[1]]
    assert model.generate(["The film"] * 2, stream_start=3, **kw) == run[3:5]
    with pytest.raises(ValueError, match="one non-negative integer per prompt"):
        model.generate(["The film"] * 2, streams=[1], **kw)
    with pytest.raises(ValueError, match="one non-negative integer per prompt"):
        model.generate(["The film"], streams=[1], stream_start=2, **kw)


def test_stop_strings_and_eos(default_model):
    out = default_model.generate(["Count: one, two, three,"], max_new_tokens=30, temperature=0, stop=[" five"],
                                 return_ids=True)[0]
    assert out.finish_reason == "stop" and " five" not in out.text and out.text.startswith(" four")
    chat = default_model.generate("Say hello.", max_new_tokens=60, temperature=0, chat=True, return_ids=True)
    assert chat.finish_reason == "eos" and chat.text
    assert all(t not in default_model.config.eos_token_ids for t in chat.token_ids)


def test_chat_template_matches_transformers(default_model, default_gguf):
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(default_gguf.parent, gguf_file=default_gguf.name)
    message = "Summarise this review: a tender, funny film."
    want = hf_tok.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True, tokenize=False)
    assert default_model.chat_prompt(message) == want


def test_chat_without_template_is_a_clear_error(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="no chat template"):
        model.generate("hi", chat=True)


def test_min_new_tokens_suppresses_eos(default_model):
    out = default_model.generate("Say hello.", max_new_tokens=40, min_new_tokens=40, temperature=0, chat=True,
                                 return_ids=True)
    assert out.finish_reason == "length" and len(out.token_ids) == 40


def test_min_new_tokens_per_prompt_holds_back_stop_strings(default_model):
    """Each row writes at least its own minimum: before it, end of sequence and
    tokens that would open a stop ("\n", "<") are suppressed; a row with no
    minimum comes out as it does unconstrained (its own random stream)."""
    prompt = "Below are several short reviews, one per line.\n<begin>\nText:"
    stop = ["\n", "</end>", "Label:"]
    kw = dict(max_new_tokens=40, temperature=1.0, stop=stop, seed=5, return_ids=True)
    mins = [0, 8, 16, 24, 32, 40]
    free = default_model.generate([prompt] * len(mins), **kw)
    held = default_model.generate([prompt] * len(mins), min_new_tokens=mins, **kw)
    assert held[0] == free[0]
    assert sum(len(g.token_ids) < m for g, m in zip(free, mins)) >= 3, "the constraint is tested where it binds"
    for g, m in zip(held, mins):
        assert len(g.token_ids) >= m
        early = default_model.decode(g.token_ids[:m])
        assert "\n" not in early and "<" not in early
    assert held[-1].finish_reason == "length"
    with pytest.raises(ValueError, match="one per prompt"):
        default_model.generate([prompt] * 2, min_new_tokens=[1], max_new_tokens=4)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        default_model.generate([prompt] * 2, min_new_tokens=[1, 5], max_new_tokens=4)


def test_end_at_sentence_after_ends_rows_at_their_first_sentence_end_past_it(default_model):
    """Past its own bound a row ends with the first token that closes a
    sentence; it only cuts, so each row is a prefix of its free run (same
    stream), and a row without a bound is the free run."""
    prompt = "Here is a long, detailed movie review.\n\nReview:"
    kw = dict(max_new_tokens=64, temperature=1.0, seed=3, return_ids=True)
    after = [None, 1, 8, 16, 24, 40]
    free = default_model.generate([prompt] * len(after), **kw)
    cut = default_model.generate([prompt] * len(after), end_at_sentence_after=after, **kw)
    assert cut[0] == free[0]
    shortened = 0
    for g, f, a in zip(cut[1:], free[1:], after[1:]):
        assert f.token_ids[: len(g.token_ids)] == g.token_ids, "a row is cut, never changed"
        if g.finish_reason == "stop":
            assert len(g.token_ids) >= a and g.text.rstrip().rstrip("\"')").endswith((".", "!", "?")), g.text
            shortened += len(g.token_ids) < len(f.token_ids)
        else:
            assert g == f, "a row that closes no sentence past its bound runs as before"
    assert shortened >= 3, "the bound is tested where it binds"
    with pytest.raises(ValueError, match="end_at_sentence_after"):
        default_model.generate(prompt, end_at_sentence_after=0, max_new_tokens=4)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(temperature=-1.0), "-1"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_k=-1), "top_k must be >= 0, got -1"),
        (dict(seed=-3), "seed"),
        (dict(top_p=1.5), "1.5"),
        (dict(min_p=2.0), "min_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(min_new_tokens=5, max_new_tokens=2), "min_new_tokens"),
        (dict(positions="first", steer={0: np.zeros(64, np.float32)}), "first"),
        (dict(steer={9: np.zeros(64, np.float32)}), "layer 9"),
        (dict(steer={0: np.zeros(3, np.float32)}), r"\(3,\)"),
        (dict(stop=[""]), "stop"),
    ],
)
def test_bad_generation_arguments(tiny, kwargs, needle):
    model, _ = tiny
    with pytest.raises(ValueError, match=needle):
        model.generate(["hi"], **kwargs)


def test_type_errors(tiny):
    model, _ = tiny
    with pytest.raises(TypeError):
        model.generate(["hi"], steer=[1])
    with pytest.raises(TypeError):
        model.generate(["hi"], temperature="hot")


def _expected_probs(logits, temperature, top_k, top_p):
    z = logits / temperature
    if top_k:
        z = np.where(z < np.sort(z)[-top_k], -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1:
        order = np.argsort(z)  # ascending, as transformers
        cumulative = np.cumsum(p[order])
        drop = cumulative <= 1 - top_p
        drop[-1] = False
        z = z.copy()
        z[order[drop]] = -np.inf
        p = np.exp(z - z.max())
        p /= p.sum()
    return p


@pytest.mark.parametrize(
    "temperature, top_k, top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.6, 5, 1.0), (1.0, 0, 0.8), (1.3, 6, 0.9)]
)
def test_sampling_distribution_chi_square(temperature, top_k, top_p):
    from scipy.stats import chi2

    logits = np.random.default_rng(3).normal(0, 0.8, size=12).astype(np.float32)
    draws = 40_000
    params = epsvec.SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, seed=42)
    tokens = epsvec._epsvec.sample_logits(np.tile(logits, (draws, 1)), list(range(draws)), params)
    counts = np.bincount(tokens, minlength=len(logits))
    p = _expected_probs(logits.astype(np.float64), temperature, top_k, top_p)
    assert counts[p == 0].sum() == 0, "a truncated token was drawn"
    keep = p > 0
    assert keep.sum() > 2, "the test needs several candidate tokens"
    stat = ((counts[keep] - draws * p[keep]) ** 2 / (draws * p[keep])).sum()
    assert chi2.sf(stat, keep.sum() - 1) > 1e-6, (counts, draws * p)
