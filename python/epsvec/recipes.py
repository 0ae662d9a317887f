"""The generation recipe of each shipped model, measured on public tuning
corpora that no reported result uses (docs/tuning.md), and the rule every
other model gets. ``"auto"`` settings (``layers``, ``strength``,
``prompt_format``) read the model's recipe; all of it is public."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._default_model import DEFAULT_MODEL_FILE, GEMMA3_FILE, QWEN_05B, QWEN_15B


@dataclass(frozen=True)
class Recipe:
    """How a model's samples are steered and prompted.

    Attributes:
        depth: The steered blocks, as the first and last fraction of the
            depth (``(0.45, 0.57)``: blocks 14-17 of 30).
        strength: Steering strength, a fraction of the residual norm; None
            for the clip-scale rule (:func:`clip_scale_strength`).
        prompt_format: ``"raw"`` or ``"chat"``; None follows the model's
            own rule (:attr:`epsvec.Model.prompt_format`).
        measured: Where the recipe was measured; None for the depth rule.
    """

    depth: tuple[float, float] = (0.45, 0.57)
    strength: float | None = None
    prompt_format: str | None = None
    measured: str | None = None

    def layers(self, num_layers: int) -> list[int]:
        """The steered blocks of a model ``num_layers`` deep."""
        first, last = round(self.depth[0] * num_layers), round(self.depth[1] * num_layers)
        return list(range(first, max(first, last) + 1))

    def strength_for(self, vectors: Sequence) -> float:
        """The recipe's strength, or the clip-scale rule's for these dataset
        vectors (None entries, classes without a vector, are skipped)."""
        if self.strength is not None:
            return self.strength
        return clip_scale_strength([vector for vector in vectors if vector is not None])

    @property
    def source(self) -> str:
        """What the recipe rests on, in words (for reports)."""
        return self.measured or ("no recipe measured for this model: steered at 45-57% of the depth (METHOD.md "
                                 "section 7), each block pushed by the clip norm per block, where the measured "
                                 "recipes of three models sit (docs/tuning.md, round 11)")


# Without C or residual norms (vectors from elsewhere): the strength METHOD.md
# section 7 found on SmolLM2-135M.
FALLBACK_STRENGTH = 0.06


def clip_scale_strength(vectors: Sequence) -> float:
    """The strength at which each steered block's push is the clip norm per
    block, ``C / sqrt(blocks)``: about the distance between two public
    (model-written) states there. The residual norm alone is a poor
    yardstick where a few massive activations set it (Gemma 3: 0.06 of it
    is 3x that distance). Measured strengths sit here: SmolLM2-135M 0.06
    (rule 0.056-0.067), Qwen 0.5B 0.08 (0.073-0.088), Gemma 3 270M
    0.01-0.03 (0.014-0.019). Mean over the classes' vectors; C and the
    residual norms come from the public negatives, so this is public too."""
    values = []
    for vector in vectors:
        clip = list((vector.privacy.get("clip_norm") or {}).values())
        norms = [vector.residual_norms[layer] for layer in vector.layers if layer in vector.residual_norms]
        if len(clip) == 1 and norms and min(norms) > 0:
            values.append(clip[0] / (math.sqrt(len(vector.layers)) * sum(norms) / len(norms)))
    return sum(values) / len(values) if values else FALLBACK_STRENGTH


# The rule: blocks at about 45-57% of the depth, where METHOD.md section 7
# found steering works best, at the clip-scale strength.
DEPTH_RULE = Recipe()

# By model file name (what `load_model` resolves a name or path to).
RECIPES = {
    DEFAULT_MODEL_FILE: Recipe(
        strength=0.06,
        prompt_format="raw",
        measured="docs/tuning.md, rounds 1-4 (VADER Amazon, tweets and NYT snippets): the depth rule's "
                 "layers and strength won; raw text beat the chat template (Pang & Lee, eps 4: 0.551 vs 0.433)"),
    QWEN_05B.file: Recipe(
        strength=0.08,
        prompt_format="raw",
        measured="docs/tuning.md, rounds 5, 8 and 9 (VADER Amazon and tweets, 2-3 seeds): raw text beat the "
                 "chat template (0.303 vs 0.183, 0.256 vs 0.189); the depth rule's blocks 11-14; strength 0.08 beat "
                 "0.06 on Amazon (0.277 vs 0.239, 3 seeds) and tied on tweets (0.300 vs 0.299), where 0.1 lost "
                 "tweets by 0.09 and 0.03 and blocks 8-11 lost on both"),
    QWEN_15B.file: Recipe(
        strength=0.06,
        prompt_format="chat",
        measured="docs/tuning.md, rounds 9-10 (VADER Amazon and tweets, 2 seeds, the chat template): the depth "
                 "rule's blocks 13-16 at 0.06 (0.243 / 0.417) against 0.08 (0.297 / 0.317): 0.08 gained 0.05 on "
                 "Amazon and lost 0.10 on tweets; round 12: raw text tied the chat template (0.226 / 0.464)"),
    # Gemma's residual norm is set by a few massive activations, so the rule's
    # 0.06 of it is several times the spread of its states at a block.
    GEMMA3_FILE: Recipe(
        strength=0.02,
        measured="docs/tuning.md, round 11 (VADER Amazon and tweets, 2 seeds, raw text, the depth rule's blocks "
                 "8-10): strengths 0.01-0.03 tie (0.151-0.166 / 0.248-0.314) and beat zero-shot (0.108 / 0.165), "
                 "where 0.06, the strength of the other models, fell below it (0.029 / 0.124); 0.02 is near the "
                 "clip-scale rule's 0.014-0.019 for it"),
}


def recipe_for(file_name: str) -> Recipe:
    """The recipe measured for a model file, or the depth rule."""
    return RECIPES.get(file_name, DEPTH_RULE)
