"""Turning user steering specs into the per-row matrix the engine adds.

A *steer* is a mapping ``{layer: vector}`` (vector of length hidden), an
object with a ``steering(strength)`` method returning one (a dataset vector,
whose strength is relative to the residual norm), or any object with such a
``directions`` attribute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InvalidInputError


def _directions(steer: Any) -> Mapping:
    directions = steer.steering(1.0) if hasattr(steer, "steering") else getattr(steer, "directions", steer)
    if not isinstance(directions, Mapping):
        raise TypeError(
            f"a steer must be a {{layer: vector}} mapping or have .directions, got {type(steer).__name__}"
        )
    return directions


def _sum(steers: Any, num_layers: int, hidden: int) -> dict[int, np.ndarray]:
    """One steer, or a tuple of steers added together, as {layer: float32 vector}."""
    total: dict[int, np.ndarray] = {}
    for steer in steers if isinstance(steers, tuple) else (steers,):
        for layer, vector in _directions(steer).items():
            if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
                raise TypeError(f"steering layers must be integers, got {layer!r}")
            if not 0 <= layer < num_layers:
                raise InvalidInputError(f"cannot steer layer {layer}: the model has {num_layers} layers (0..{num_layers - 1})")
            vector = np.asarray(vector, dtype=np.float32)
            if vector.shape != (hidden,):
                raise InvalidInputError(f"steering vector for layer {layer} has shape {vector.shape}, expected ({hidden},)")
            if not np.isfinite(vector).all():
                raise InvalidInputError(f"steering vector for layer {layer} has NaN or infinite values")
            total[int(layer)] = total.get(int(layer), 0) + vector
    return total


def steering_matrix(
    steer: Any, strength: float | Sequence[float], n_prompts: int, num_layers: int, hidden: int
) -> tuple[list[int], np.ndarray] | None:
    """The layers and ``[n_prompts, n_layers, hidden]`` vectors (strength applied).

    ``steer`` is one steer for every prompt, a tuple of steers summed, or a
    list with one entry (steer, tuple or None) per prompt.
    """
    if steer is None:
        return None
    if isinstance(steer, list):
        if len(steer) != n_prompts:
            raise InvalidInputError(f"steer has {len(steer)} entries for {n_prompts} prompts")
        per_row = [None if s is None else _sum(s, num_layers, hidden) for s in steer]
    else:
        shared = _sum(steer, num_layers, hidden)
        per_row = [shared] * n_prompts
    strengths = np.broadcast_to(np.asarray(strength, dtype=np.float64), (n_prompts,))
    if not np.isfinite(strengths).all():
        raise InvalidInputError(f"strength must be finite, got {strength!r}")
    layers = sorted({layer for row in per_row if row for layer in row})
    if not layers:
        return None
    matrix = np.zeros((n_prompts, len(layers), hidden), dtype=np.float32)
    for i, row in enumerate(per_row):
        for j, layer in enumerate(layers):
            if row and layer in row:
                matrix[i, j] = strengths[i] * row[layer]
    return layers, matrix
