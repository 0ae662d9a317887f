"""`DatasetVector`: a differentially private steering direction per layer,
with the model it belongs to, the prompt it goes with and the privacy
parameters it was made with."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _epsvec
from .errors import InvalidInputError, VectorModelMismatchError

__all__ = ["DatasetVector"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetVector:
    """Unit steering directions ``{layer: float32 [hidden]}`` and their provenance.

    When a dataset vector steers generation, ``strength`` is a fraction of
    the residual stream's typical size: layer ``l`` gets
    ``strength * residual_norms[l] * directions[l]`` (METHOD.md §5, §7;
    ~0.05-0.1 works on most models, less where a few massive activations
    set the residual norm: :func:`epsvec.recipes.clip_scale_strength`).

    Attributes:
        directions: One unit vector per released layer.
        label: The class the vector was extracted from (None without labels).
        model: Fingerprint of the model: architecture, num_layers,
            hidden_size and a hash of the weight files.
        privacy: How the release was made: eps, delta, sigma, clip_norm,
            sample_rate, adjacency, mechanism, accountant, seeded.
        residual_norms: Mean L2 norm of a token's residual state at each
            layer, measured on public (model-generated) prompts; empty means
            ``strength`` is absolute.
        prompt: The prompt the vector was extracted with and steers best:
            ``{"domain": ..., "fixed_shots": [...], "format": {...}}`` (shots
            public or DP-chosen; the format as :class:`epsvec.prompts.PromptFormat`
            writes it; none in older files means raw).
    """

    directions: dict[int, np.ndarray]
    label: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] = field(default_factory=dict)
    residual_norms: dict[int, float] = field(default_factory=dict)
    prompt: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        return sorted(self.directions)

    @property
    def array(self) -> np.ndarray:
        """``[n_layers, hidden]`` float32, layers in ascending order."""
        return np.stack([self.directions[layer] for layer in self.layers]).astype(np.float32)

    def steering(self, strength: float = 1.0) -> dict[int, np.ndarray]:
        """The vectors added to the residual stream at ``strength``: ``{layer: float32 [hidden]}``."""
        return {l: (strength * self.residual_norms.get(l, 1.0) * d).astype(np.float32) for l, d in self.directions.items()}

    def __repr__(self) -> str:
        p = self.privacy
        return (
            f"DatasetVector(label={self.label!r}, layers={self.layers}, hidden={self.array.shape[1]}, "
            f"eps={p.get('eps')}, delta={p.get('delta')}, model={self.model.get('architecture')})"
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors file (directions) with JSON metadata."""
        metadata = {"format_version": FORMAT_VERSION, "layers": self.layers, "label": self.label,
                    "model": self.model, "privacy": self.privacy, "prompt": self.prompt,
                    "residual_norms": {str(l): v for l, v in self.residual_norms.items()}}
        _epsvec.save_vector(os.fspath(path), np.ascontiguousarray(self.array), json.dumps(metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DatasetVector":
        """Read a vector written by :meth:`save`.

        Raises:
            CorruptFileError: not a valid vector file.
        """
        from .errors import CorruptFileError

        array, metadata = _epsvec.load_vector(os.fspath(path))
        try:
            meta = json.loads(metadata)
            layers = [int(l) for l in meta["layers"]]
            norms = {int(l): float(v) for l, v in (meta.get("residual_norms") or {}).items()}
        except (ValueError, TypeError, KeyError) as e:
            raise CorruptFileError(f"corrupt vector file {os.fspath(path)}: bad metadata ({e})") from None
        if len(layers) != array.shape[0] or meta.get("format_version") != FORMAT_VERSION:
            raise CorruptFileError(f"corrupt vector file {os.fspath(path)}: metadata does not match the directions")
        return cls({l: array[i].copy() for i, l in enumerate(layers)}, meta.get("label"), meta.get("model") or {},
                   meta.get("privacy") or {}, norms, meta.get("prompt") or {})

    def to_gguf(self, path: str | os.PathLike, strength: float = 1.0) -> None:
        """Write a llama.cpp control vector (``--control-vector`` / llama-server).

        Tensor ``direction.{l}`` holds ``steering(strength)[l]``. llama.cpp adds
        ``direction.l`` to the output of block ``l`` (0-based, as here), at
        every position of every forward pass, i.e. ``positions="all"``;
        epsvec's default steers the last position only. llama.cpp cannot
        steer block 0. ``--control-vector-scaled FILE S`` multiplies by S.
        """
        from ._gguf_writer import write_gguf

        if 0 in self.directions:
            raise InvalidInputError("llama.cpp control vectors cannot steer block 0; drop layer 0 from this vector")
        metadata = {
            "general.architecture": "controlvector",
            "controlvector.model_hint": str(self.model.get("architecture", "llama")),
            "controlvector.layer_count": len(self.directions),
        }
        tensors = {f"direction.{l}": v for l, v in sorted(self.steering(strength).items())}
        write_gguf(os.fspath(path), metadata, tensors)

    def check_model(self, model) -> None:
        """Raise if this vector was made with a different model than ``model``."""
        mine = self.model
        if not mine:
            return
        theirs = model.fingerprint()
        for key in ("architecture", "num_layers", "hidden_size", "weights_sha256"):
            if key in mine and mine[key] != theirs[key]:
                raise VectorModelMismatchError(
                    f"this vector was extracted with another model ({key} {mine[key]!r}, the model has "
                    f"{theirs[key]!r}); extract a vector with this model"
                )
