"""A minimal GGUF v3 writer: string/int metadata and 1-D float32 tensors,
enough for llama.cpp control vectors."""

from __future__ import annotations

import struct

import numpy as np

MAGIC = b"GGUF"
VERSION = 3
ALIGNMENT = 32
TYPE_UINT32, TYPE_STRING = 4, 8
GGML_TYPE_F32 = 0


def _string(s: str) -> bytes:
    data = s.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _value(v) -> bytes:
    if isinstance(v, str):
        return struct.pack("<I", TYPE_STRING) + _string(v)
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32:
        return struct.pack("<II", TYPE_UINT32, v)
    raise TypeError(f"unsupported GGUF metadata value {v!r}")


def write_gguf(path: str, metadata: dict, tensors: dict[str, np.ndarray]) -> None:
    arrays = {name: np.ascontiguousarray(t, dtype=np.float32) for name, t in tensors.items()}
    for name, a in arrays.items():
        if a.ndim != 1:
            raise ValueError(f"tensor {name} must be 1-D")
    head = MAGIC + struct.pack("<IQQ", VERSION, len(arrays), len(metadata))
    head += b"".join(_string(k) + _value(v) for k, v in metadata.items())
    offset, infos, blobs = 0, [], []
    for name, a in arrays.items():
        infos.append(_string(name) + struct.pack("<IQIQ", 1, a.shape[0], GGML_TYPE_F32, offset))
        blob = a.tobytes()
        blob += b"\0" * (-len(blob) % ALIGNMENT)
        blobs.append(blob)
        offset += len(blob)
    head += b"".join(infos)
    head += b"\0" * (-len(head) % ALIGNMENT)
    with open(path, "wb") as f:
        f.write(head)
        f.write(b"".join(blobs))
