"""Bad input gets a clear exception, never a crash."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import epsvec
from conftest import build_tiny


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny("llama", tmp_path_factory.mktemp("err") / "llama")


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_path():
    with pytest.raises(epsvec.ModelLoadError, match="does not exist"):
        epsvec.load_model("/no/such/model")
    with pytest.raises(epsvec.ModelLoadError, match="known names: smollm2-135m-instruct, gemma-3-270m"):
        epsvec.load_model("gemma-3-270")


def test_directory_without_config(tmp_path):
    with pytest.raises(epsvec.ModelLoadError, match="config.json"):
        epsvec.load_model(tmp_path)


def test_corrupt_config(tiny_llama, tmp_path):
    path = copy_model(tiny_llama, tmp_path / "m")
    (path / "config.json").write_text("{not json")
    with pytest.raises(epsvec.CorruptFileError, match="config.json"):
        epsvec.load_model(path)


def test_unsupported_architecture_names_supported(tiny_llama, tmp_path):
    path = copy_model(tiny_llama, tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(epsvec.UnsupportedArchitectureError, match="Qwen3ForCausalLM") as info:
        epsvec.load_model(path)
    assert "GPT2LMHeadModel" in str(info.value)
    assert isinstance(info.value, epsvec.ModelLoadError)


def test_wrong_tensor_shape(tiny_llama, tmp_path):
    from safetensors.numpy import load_file, save_file

    path = copy_model(tiny_llama, tmp_path / "m")
    tensors = load_file(path / "model.safetensors")
    name = "model.layers.1.mlp.up_proj.weight"
    tensors[name] = np.zeros((7, 64), dtype=np.float32)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(epsvec.ShapeMismatchError, match="up_proj"):
        epsvec.load_model(path)


def test_missing_tensor(tiny_llama, tmp_path):
    from safetensors.numpy import load_file, save_file

    path = copy_model(tiny_llama, tmp_path / "m")
    tensors = load_file(path / "model.safetensors")
    del tensors["model.layers.2.self_attn.k_proj.weight"]
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(epsvec.ModelLoadError, match="k_proj"):
        epsvec.load_model(path)


def test_truncated_safetensors(tiny_llama, tmp_path):
    path = copy_model(tiny_llama, tmp_path / "m")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(epsvec.CorruptFileError):
        epsvec.load_model(path)


def test_corrupt_tokenizer(tiny_llama, tmp_path):
    path = copy_model(tiny_llama, tmp_path / "m")
    (path / "tokenizer.json").write_text('{"model": 3}')
    with pytest.raises(epsvec.CorruptFileError, match="tokenizer.json"):
        epsvec.load_model(path)


@pytest.mark.parametrize("keep", [3, 100, 5_000, 2_000_000, -1000])
def test_truncated_gguf(default_gguf, tmp_path, keep):
    """Cut in the header, the metadata, the tensor infos and the data."""
    with open(default_gguf, "rb") as f:
        data = f.read(keep if keep > 0 else None)
    if keep < 0:
        data = data[:keep]
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(data)
    with pytest.raises(epsvec.CorruptFileError):
        epsvec.load_model(bad)


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"this is not a model" * 10)
    with pytest.raises(epsvec.CorruptFileError, match="GGUF"):
        epsvec.load_model(bad)


def test_bad_device_and_dtype(tiny_llama):
    with pytest.raises(epsvec.InvalidInputError, match="tpu"):
        epsvec.load_model(tiny_llama, device="tpu")
    with pytest.raises(epsvec.InvalidInputError, match="int8"):
        epsvec.load_model(tiny_llama, dtype="int8")


@pytest.mark.skipif(epsvec.cuda_device_count() > 0, reason="a GPU is present")
def test_cuda_asked_for_but_absent(tiny_llama):
    with pytest.raises(epsvec.DeviceError, match="CUDA is not available"):
        epsvec.load_model(tiny_llama, device="cuda")
    with pytest.raises(epsvec.DeviceError):
        epsvec.load_model(tiny_llama, device="cuda:1")


@pytest.fixture(scope="module")
def model(tiny_llama):
    return epsvec.load_model(tiny_llama, device="cpu")


def test_bad_texts(model):
    with pytest.raises(epsvec.InvalidInputError, match="empty"):
        model.hidden_states([])
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        model.hidden_states(["fine", 3])
    with pytest.raises(TypeError):
        model.hidden_states(None)
    with pytest.raises(TypeError):
        model.tokenize(b"bytes")
    with pytest.raises(epsvec.InvalidInputError, match="text 1 is empty"):
        model.hidden_states(["fine", ""])
    with pytest.raises(ValueError):  # InvalidInputError is a ValueError too
        model.logits([])


def test_bad_capture_arguments(model):
    with pytest.raises(epsvec.InvalidInputError, match="layer 3 does not exist"):
        model.hidden_states(["x y"], layers=[0, 3])
    with pytest.raises(epsvec.InvalidInputError, match="layer -4"):
        model.hidden_states(["x y"], layers=-4)
    with pytest.raises(epsvec.InvalidInputError, match="pool"):
        model.hidden_states(["x y"], pool="max")
    with pytest.raises(epsvec.InvalidInputError, match="batch_size"):
        model.hidden_states(["x y"], batch_size=0)
    with pytest.raises(TypeError):
        model.hidden_states(["x y"], layers=["a"])


def test_texts_longer_than_context_are_truncated_with_a_warning(model):
    long_text = "the film " * 3000  # far beyond the 2048-token context
    with pytest.warns(UserWarning, match="1 of 2 texts"):
        states = model.hidden_states([long_text, "short"])
    assert states.shape[0] == 2 and np.isfinite(states).all()
