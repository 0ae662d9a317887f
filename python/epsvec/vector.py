"""`DatasetVector`: a differentially private steering direction per layer,
with the model it belongs to and the privacy parameters it was made with."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _epsvec
from .errors import VectorModelMismatchError

__all__ = ["DatasetVector"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetVector:
    """Unit steering directions ``{layer: float32 [hidden]}`` and their provenance.

    Attributes:
        directions: One unit vector per released layer.
        label: The class the vector was extracted from (None without labels).
        model: Fingerprint of the model: architecture, num_layers,
            hidden_size and a hash of the weight files.
        privacy: How the release was made: eps, delta, sigma, clip_norm,
            sample_rate, adjacency, records, mechanism, accountant, seeded.
    """

    directions: dict[int, np.ndarray]
    label: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        return sorted(self.directions)

    @property
    def array(self) -> np.ndarray:
        """``[n_layers, hidden]`` float32, layers in ascending order."""
        return np.stack([self.directions[layer] for layer in self.layers]).astype(np.float32)

    def __repr__(self) -> str:
        p = self.privacy
        eps = p.get("eps")
        return (
            f"DatasetVector(label={self.label!r}, layers={self.layers}, hidden={self.array.shape[1]}, "
            f"eps={eps}, delta={p.get('delta')}, model={self.model.get('architecture')})"
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors file (directions) with JSON metadata."""
        metadata = {"format_version": FORMAT_VERSION, "layers": self.layers, "label": self.label,
                    "model": self.model, "privacy": self.privacy}
        _epsvec.save_vector(os.fspath(path), np.ascontiguousarray(self.array), json.dumps(metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DatasetVector":
        """Read a vector written by :meth:`save`.

        Raises:
            CorruptFileError: not a valid vector file.
        """
        from .errors import CorruptFileError

        array, metadata = _epsvec.load_vector(os.fspath(path))
        meta = json.loads(metadata)
        layers = meta.get("layers")
        if not isinstance(layers, list) or len(layers) != array.shape[0] or meta.get("format_version") != FORMAT_VERSION:
            raise CorruptFileError(f"corrupt vector file {os.fspath(path)}: metadata does not match the directions")
        return cls({int(l): array[i].copy() for i, l in enumerate(layers)}, meta.get("label"), meta.get("model") or {},
                   meta.get("privacy") or {})

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
