"""How long samples should be: a DP histogram of the records' lengths.

Left alone, a small model ends an example early (at its first newline):
tweets came out at about half their real length, and MAUVE compares length
distributions too. So each class's record lengths, in tokens as the prompt
writes them, are counted in ``LENGTH_BINS`` equal bins up to
``max_new_tokens`` (longer records in the last bin), Gaussian noise is added
(each record is in one bin: L2 sensitivity 1 under add/remove), and every
sample draws a length from the noisy histogram (each count less one noise
std, at least 0: a bin without records would otherwise keep its positive
noise; if no bin is left, lengths are left to the model), generates at
least ``MIN_FRACTION`` of it before it may end, and from ``END_FRACTION``
of it on ends at its first sentence end (``Model.generate(min_new_tokens=,
end_at_sentence_after=)``). Drawing and generating are post-processing of
the release; only the noisy histogram is published.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .privacy import gaussian_sigma, noisy_histogram
from .report import PrivacyStep

LENGTH_BINS = 8
# A sample ends at the end of the line it is writing once past its minimum,
# so a minimum of the whole drawn length overshoots it (tuning round 6).
MIN_FRACTION = 0.5
# Without an end a minimum only lengthens where the model already writes
# long; ending at a sentence past 1.25 x the draw kept MAUVE and brought
# lengths closer (tuning round 7). None: no end.
END_FRACTION = 1.25


@dataclass(frozen=True)
class LengthHistogram:
    """A class's released length distribution: bin ``i`` covers
    ``edges[i] <= tokens < edges[i + 1]`` (the last bin also every longer
    record), with probability ``weights[i]``."""

    edges: list[int]
    weights: list[float]

    def bounds(self, seed: int, indices) -> list[tuple[int, int | None]]:
        """``(least new tokens, sentence end from)`` of samples ``indices``:
        sample ``j``'s depends on (seed, j) alone, so split or resumed runs
        draw the same."""
        indices = list(indices)
        if sum(self.weights) <= 0:  # no bin stood out of the noise: lengths are left to the model
            return [(0, None)] * len(indices)
        draws = np.random.default_rng(seed).random((max(indices, default=-1) + 1, 2))
        bins = np.searchsorted(np.cumsum(self.weights), draws[:, 0] * sum(self.weights), side="right")
        bins = np.minimum(bins, len(self.weights) - 1)
        low, high = np.array(self.edges[:-1])[bins], np.array(self.edges[1:])[bins]
        lengths = low + draws[:, 1] * (high - low)
        end = lambda j: None if END_FRACTION is None else max(1, int(END_FRACTION * lengths[j]))
        return [(int(MIN_FRACTION * lengths[j]), end(j)) for j in indices]

    def to_dict(self) -> dict:
        return {"edges": self.edges, "weights": self.weights}

    @classmethod
    def from_dict(cls, d: dict) -> "LengthHistogram":
        """From :meth:`to_dict`; ValueError for anything it cannot have written."""
        edges, weights = [int(e) for e in d["edges"]], [float(w) for w in d["weights"]]
        if (len(edges) != len(weights) + 1 or edges != sorted(set(edges)) or edges[0] < 0
                or not all(np.isfinite(w) and w >= 0 for w in weights)):
            raise ValueError(f"not a length histogram: edges {edges}, weights {weights}")
        return cls(edges, weights)


def bin_edges(max_new_tokens: int) -> list[int]:
    """``LENGTH_BINS + 1`` public edges from 0 to ``max_new_tokens`` (fewer for a small cap)."""
    return sorted({round(i * max_new_tokens / LENGTH_BINS) for i in range(LENGTH_BINS + 1)})


def bins_of(token_counts: list[int], max_new_tokens: int) -> list[int]:
    """The bin of each length in tokens (:func:`bin_edges`; longer ones in the last bin)."""
    edges = bin_edges(max_new_tokens)
    return np.minimum(np.searchsorted(edges, token_counts, side="right") - 1, len(edges) - 2).tolist()


def record_bins(model, fmt, records: list[str], max_new_tokens: int) -> list[int]:
    """Each record's length bin, its tokens counted as the prompt writes it
    (``fmt.example``). Private: it goes only into :func:`release_lengths`."""
    if not records:
        return []
    ids = model.tokenize([" " + fmt.example(t) for t in records], add_special_tokens=False)
    return bins_of([len(i) for i in ids], max_new_tokens)


def release_lengths(bins_of_records: list[int], max_new_tokens: int, budget: tuple[float, float], adjacency: str, *,
                    sample_rate: float = 1.0, noise_seed: int | None = None, label: str | None = None
                    ) -> tuple[LengthHistogram, PrivacyStep]:
    """The noisy length histogram of one class's records (their bins, from
    :func:`record_bins`; each counted with probability ``sample_rate``, by a
    secret coin inside the release) and its privacy step. Substitution moves
    one record between two bins (L2 sensitivity sqrt 2); it is calibrated to
    2, as the clip norm's doubling does for the vector."""
    eps, delta = budget
    sigma = gaussian_sigma(eps, delta, sample_rate=sample_rate, adjacency=adjacency)
    edges = bin_edges(max_new_tokens)
    bins = len(edges) - 1
    noisy, info = noisy_histogram(bins_of_records, bins, sigma, sample_rate=sample_rate, noise_seed=noise_seed)
    # A bin without records would keep its positive noise and pull samples
    # long: each count loses one noise std (public) before it counts.
    weights = np.maximum(noisy - info["noise_std"], 0.0)
    total = weights.sum()
    over = "a Poisson sample of the records (secret exact coins)" if sample_rate < 1 else "every record"
    step = PrivacyStep(
        "length histogram", float(eps), float(delta), sigma, sample_rate, adjacency, {str(label): 1.0},
        f"each record counts once in {bins} bins of its length in tokens (up to max_new_tokens); Gaussian noise "
        "on the counts (L2 sensitivity 1; with substitution calibrated to 2, above the true sqrt 2); each count "
        f"less one noise std, at least 0, gives its bin's share; counted over {over}",
        info["accountant"], info["noise"], [], None, "one count per record", info["seeded"])
    return LengthHistogram(edges, (weights / total if total > 0 else weights).tolist()), step
