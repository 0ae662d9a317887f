"""Writes quants.gguf (one small tensor per supported ggml type, random
blocks) and quants_expected.safetensors (gguf-py's dequantization of each).

Run with a Python that has gguf-py, numpy and safetensors:
    python tests/data/make_quant_fixtures.py
"""

from pathlib import Path

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize
from safetensors.numpy import save_file

HERE = Path(__file__).parent
rng = np.random.default_rng(20240607)

# Byte offsets of the f16 scale fields in each quantized block.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def scales(n: int) -> np.ndarray:
    """Finite f16 scales from 1e-6 (subnormal in f16) to 2, either sign, some zero."""
    s = rng.uniform(-2, 2, n) * 10.0 ** rng.integers(-6, 1, n)
    s[rng.random(n) < 0.05] = 0
    return s.astype(np.float16)


def random_blocks(qtype: T, shape: tuple[int, ...]) -> np.ndarray:
    block, size = GGML_QUANT_SIZES[qtype]
    n_blocks = int(np.prod(shape)) // block
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        raw[:, off:off + 2] = scales(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(*shape[:-1], shape[-1] // block * size)


def special_floats(shape: tuple[int, ...]) -> np.ndarray:
    """Normal values plus zeros of both signs, infinities, a NaN, subnormals."""
    x = (rng.standard_normal(int(np.prod(shape))) * 3).astype(np.float32)
    x[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -6e-8, 65504.0]
    return x.reshape(shape)


def main() -> None:
    tensors: dict[str, tuple[np.ndarray, T | None]] = {}
    f = special_floats((4, 256))
    tensors["F32"] = (f, None)
    tensors["F16"] = (f.astype(np.float16), None)
    bf16 = (f.view(np.uint32) >> 16).astype(np.uint16)  # truncation is fine: any bits are valid bf16
    tensors["BF16"] = (bf16.view(np.uint8).reshape(4, 512), T.BF16)
    for qtype in F16_FIELDS:
        tensors[qtype.name] = (random_blocks(qtype, (4, 256)), qtype)
    # Three dims, to pin down the ggml <-> PyTorch dimension order.
    tensors["Q8_0_3d"] = (random_blocks(T.Q8_0, (2, 3, 64)), T.Q8_0)

    writer = GGUFWriter(HERE / "quants.gguf", arch="quant-fixtures")
    expected = {}
    for name, (data, qtype) in tensors.items():
        writer.add_tensor(name, data, raw_dtype=qtype)
        if qtype is None:
            expected[name] = data.astype(np.float32)
        else:
            expected[name] = dequantize(data, qtype).astype(np.float32, copy=False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file(expected, str(HERE / "quants_expected.safetensors"))


if __name__ == "__main__":
    main()
