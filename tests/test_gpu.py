"""The same golden checks on CUDA (float32 tight, bfloat16 loose). Skipped
without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

import epsvec
from conftest import SENTENCES, VARIANTS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(epsvec.cuda_device_count() == 0, reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_cuda_matches_transformers(tiny_models, variant, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype)
    path = tiny_models[variant]
    # Eager: the one implementation that applies Gemma 2's attention soft-capping (some
    # transformers releases pick SDPA on CUDA, which skips it).
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, attn_implementation="eager").to("cuda").eval()
    model = epsvec.load_model(path, device="cuda", dtype=dtype)
    assert model.config.device == "cuda:0" and model.config.dtype == dtype
    ours = model.hidden_states(SENTENCES, pool=None, batch_size=4)
    for i, ids in enumerate(model.tokenize(SENTENCES)):
        with torch.no_grad():
            out = hf(torch.tensor([ids], device="cuda"), output_hidden_states=True)
        # Blocks 0..L-2 (the last one is returned post-norm by transformers).
        ref = torch.stack([h[0] for h in out.hidden_states[1:-1]], dim=1).float().cpu().numpy()
        got = ours[i][:, :-1]
        if dtype == "float32":
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
        else:  # bfloat16 rounds differently op by op: compare directions
            cos = (got * ref).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(ref, axis=-1)
            assert cos.min() > 0.99, cos.min()


@pytest.mark.parametrize("first", ["epsvec.load_model(tiny, device='cpu')", "epsvec.cuda_device_count()"])
def test_epsvec_first_leaves_cuda_to_torch(tiny_models, first):
    """libtorch decides once per process whether CUDA exists: epsvec, imported
    and used before torch, must not make that decision before the CUDA library is loaded."""
    import subprocess
    import sys

    code = f"import epsvec; tiny = {str(tiny_models['llama'])!r}; {first}; import torch; torch.zeros(1, device='cuda')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def _hf_cuda(path, dtype="float32"):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), attn_implementation="eager").to(
        "cuda").eval()


@pytest.mark.parametrize("variant", ["llama", "qwen3", "gemma3", "olmo2"])
def test_cuda_logits_and_greedy_match_transformers(tiny_models, variant):
    import torch
    from test_generate import hf_greedy

    path = tiny_models[variant]
    hf = _hf_cuda(path)
    model = epsvec.load_model(path, device="cuda", dtype="float32")
    for text, got in zip(SENTENCES, model.logits(SENTENCES)):
        ids = model.tokenize(text)[0]
        with torch.no_grad():
            want = hf(torch.tensor([ids], device="cuda")).logits[0].float().cpu().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    got = [g.token_ids for g in model.generate(SENTENCES, max_new_tokens=12, temperature=0, return_ids=True,
                                               batch_size=4)]
    assert got == hf_greedy(hf, model, SENTENCES, 12)


@pytest.mark.parametrize("positions", ["last", "all"])
def test_cuda_steered_greedy_matches_transformers_hook(tiny_models, positions):
    import torch
    from test_generate import adding_hook, hf_greedy

    path = tiny_models["llama"]
    hf = _hf_cuda(path)
    model = epsvec.load_model(path, device="cuda", dtype="float32")
    vector = np.random.default_rng(0).standard_normal(model.config.hidden_size).astype(np.float32)
    vector *= 3.0 / np.linalg.norm(vector)
    got = [g.token_ids for g in model.generate(SENTENCES, max_new_tokens=12, temperature=0, return_ids=True,
                                               steer={1: vector}, positions=positions)]
    hook = adding_hook(torch.from_numpy(vector).to("cuda"), positions)
    assert got == hf_greedy(hf, model, SENTENCES, 12, hook=(1, hook))
    plain = [g.token_ids for g in model.generate(SENTENCES, max_new_tokens=12, temperature=0, return_ids=True)]
    assert got != plain, "the steering should change the text"


def test_cuda_sampling_is_seeded_per_prompt(tiny_models):
    model = epsvec.load_model(tiny_models["qwen2"], device="cuda", dtype="bfloat16")
    kw = dict(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=1234)
    a = model.generate(SENTENCES, batch_size=4, **kw)
    assert model.generate(SENTENCES, batch_size=4, **kw) == a
    assert model.generate(SENTENCES, batch_size=1, **kw) == a
    assert model.generate(SENTENCES, batch_size=4, **{**kw, "seed": 99}) != a
    # Copies of one prompt share a prefill and keep their own streams.
    copies = model.generate([SENTENCES[0]] * 8, batch_size=8, **kw)
    assert len(set(copies)) > 1


def test_cuda_release_equals_the_cpu_release(tiny_models):
    """The whole DP extraction on the GPU: same records, public negatives,
    clip and test noise seed give the CPU's vector (float32 rounding aside)."""
    from test_extract import PRIVATE, PUBLIC

    path = tiny_models["llama"]
    kw = dict(eps=4.0, negatives=PUBLIC, layers=[1, 2], clip_norm=5.0, noise_seed=3, progress=False)
    cpu = epsvec.extract(PRIVATE, model=epsvec.load_model(path, device="cpu"), **kw)
    gpu = epsvec.extract(PRIVATE, model=epsvec.load_model(path, device="cuda", dtype="float32"), **kw)
    for layer in (1, 2):
        assert float(cpu.directions[layer] @ gpu.directions[layer]) > 0.9999
    assert gpu.privacy == cpu.privacy
    # bfloat16 (the CUDA default) runs the same release end to end.
    bf16 = epsvec.extract(PRIVATE, model=epsvec.load_model(path, device="cuda"), **kw)
    assert all(np.isfinite(d).all() and abs(np.linalg.norm(d) - 1) < 1e-5 for d in bf16.directions.values())


def test_cuda_synthesize_end_to_end(tiny_models):
    model = epsvec.load_model(tiny_models["llama"], device="cuda")
    assert model.config.dtype == "bfloat16"
    texts = [s for s in SENTENCES for _ in range(3)]
    labels = ["a", "b"] * 6
    with pytest.warns(UserWarning):
        out = epsvec.synthesize(texts, 4, eps=4.0, labels=labels, classes=["a", "b"], model=model, progress=False,
                                num_negatives=4, max_new_tokens=8, seed=0)
    assert sorted(out.labels) == ["a"] * 4 + ["b"] * 4 and all(isinstance(t, str) for t in out.texts)
