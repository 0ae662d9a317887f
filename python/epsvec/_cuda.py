"""Making libtorch's CUDA backend available to the engine.

The extension links only libtorch's CPU library, so importing epsvec stays
light. libtorch registers its CUDA backend when ``libtorch_cuda.so`` is
loaded; that happens here, only when a CUDA device may be used and an NVIDIA
driver is present (``import torch`` would do the same, at higher cost).

The load must come before anything asks libtorch about CUDA: the first
question fixes the answer for the whole process, torch's included (torch
then fails with "Cannot initialize CUDA without ATen_cuda library"). So
nothing in epsvec asks except after :func:`enable_cuda`.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from pathlib import Path

_loaded = False


def _driver_present() -> bool:
    if os.path.exists("/proc/driver/nvidia/version"):
        return True
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def enable_cuda() -> None:
    """Load torch's CUDA library once, if torch has one and a driver exists."""
    global _loaded
    if _loaded or not _driver_present():
        return
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return
    for folder in spec.submodule_search_locations:
        library = Path(folder) / "lib" / "libtorch_cuda.so"
        if library.is_file():
            ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
            _loaded = True
            return


def device_count() -> int:
    """How many CUDA devices libtorch sees (0 without a GPU or driver)."""
    from ._epsvec import cuda_device_count

    enable_cuda()
    return cuda_device_count()
