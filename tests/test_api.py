"""The public API on the embedded default model."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import epsvec


def test_default_model_config(default_model):
    c = default_model.config
    assert (c.architecture, c.num_layers, c.hidden_size) == ("LlamaForCausalLM", 30, 576)
    assert (c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size) == (9, 3, 64, 49152)
    assert c.tie_word_embeddings and c.format == "gguf" and c.device == "cpu" and c.dtype == "float32"
    assert c.chat_template and "im_start" in c.chat_template
    assert "LlamaForCausalLM" in repr(default_model)


def test_hidden_state_shapes(default_model):
    texts = ["A warm and witty comedy.", "Dull."]
    mean = default_model.hidden_states(texts)
    assert mean.shape == (2, 30, 576) and mean.dtype == np.float32
    last = default_model.hidden_states(texts, layers=[-1, 0, 14], pool="last")
    assert last.shape == (2, 3, 576)
    np.testing.assert_allclose(last[:, 1], default_model.hidden_states(texts, layers=0, pool="last")[:, 0], rtol=1e-5)
    tokens = default_model.hidden_states(texts, layers=[5, 6], pool=None)
    n_tokens = [len(ids) for ids in default_model.tokenize(texts)]
    assert [t.shape for t in tokens] == [(n, 2, 576) for n in n_tokens]
    np.testing.assert_allclose(tokens[0].mean(0), mean[0, 5:7], rtol=1e-4, atol=1e-4)
    single = default_model.hidden_states("A warm and witty comedy.", layers=[3])
    np.testing.assert_allclose(single[0, 0], mean[0, 3], rtol=1e-4, atol=1e-4)


def test_batch_order_is_preserved(default_model):
    texts = ["short", "a much longer sentence than the others in this batch", "mid length one"]
    together = default_model.hidden_states(texts, layers=[10], batch_size=2)
    for i, text in enumerate(texts):
        alone = default_model.hidden_states([text], layers=[10])
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-4, atol=1e-4)


def test_bfloat16_on_cpu_is_close_to_float32(default_gguf, default_model):
    bf16 = epsvec.load_model(default_gguf, device="cpu", dtype="bfloat16")
    assert bf16.config.dtype == "bfloat16"
    text = ["An intelligent, humane drama."]
    a = default_model.hidden_states(text, layers=[5])[0, 0]
    b = bf16.hidden_states(text, layers=[5])[0, 0]
    assert b.dtype == np.float32
    assert np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) > 0.99


def test_engine_work_releases_the_gil(default_model):
    texts = [f"Sentence number {i} about a film that is long enough to take a while." for i in range(64)]
    done = threading.Event()
    ticks = 0

    def work():
        default_model.hidden_states(texts, batch_size=8)
        done.set()

    thread = threading.Thread(target=work)
    thread.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    thread.join()
    assert ticks > 20, "the main thread was blocked while the engine ran"


@pytest.mark.parametrize("torch_first", [False, True])
def test_imports_with_or_without_torch(torch_first):
    code = (
        ("import torch\n" if torch_first else "")
        + "import sys, epsvec\n"
        + "m = epsvec.load_model(device='cpu')\n"
        + "assert m.hidden_states(['hi there'], layers=[0]).shape == (1, 1, 576)\n"
        + f"assert ('torch' in sys.modules) == {torch_first}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
