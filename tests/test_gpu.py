"""The same golden checks on CUDA (float32 tight, bfloat16 loose). Skipped
without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

import epsvec
from conftest import SENTENCES, VARIANTS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(epsvec._epsvec.cuda_device_count() == 0 and not __import__("torch").cuda.is_available(),
                       reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_cuda_matches_transformers(tiny_models, variant, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype)
    path = tiny_models[variant]
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to("cuda").eval()
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
