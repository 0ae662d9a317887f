"""The privacy accountant: noise calibration for one Gaussian release.

epsvec releases ``noisy = sum_i clip(d_i) + N(0, (sigma * C)^2 I)``, where
each private record's difference vector ``d_i`` is clipped to L2 norm ``C``
and the sum runs over every record, or over a Poisson sample of them (each
kept independently with probability ``sample_rate``, drawn inside the
mechanism from a secret random source). Normalising, steering and generating
text afterwards are post-processing and cost nothing more.

Unit of privacy: one record. ``adjacency="add_remove"`` (neighbouring
datasets differ by one added or removed record; L2 sensitivity ``C``) or
``"substitution"`` (one record replaced; sensitivity ``2C``). ``sigma`` is
always the noise standard deviation divided by ``C``.

Exact, not bounds:

* ``sample_rate = 1``: the analytic Gaussian mechanism (Balle & Wang,
  "Improving the Gaussian Mechanism for Differential Privacy", ICML 2018,
  Thm. 8).
* ``sample_rate < 1``: the tight privacy profile of the Poisson-subsampled
  Gaussian for one release, in both directions (closed form through the
  likelihood-ratio threshold; for substitution, the dominating pair of Zhu,
  Dong & Wang, AISTATS 2022). Checked against Google's ``dp-accounting`` PLD
  accountant in the tests.

These functions describe one release; several private steps compose by
basic composition (eps and delta add), disjoint classes by parallel
composition (the maximum).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _epsvec

__all__ = ["gaussian_sigma", "gaussian_epsilon", "gaussian_delta"]


def gaussian_sigma(eps: float, delta: float, *, sample_rate: float = 1.0, adjacency: str = "add_remove") -> float:
    """The smallest noise multiplier making one release (eps, delta)-DP.

    Args:
        eps: Target epsilon, finite and > 0.
        delta: Target delta in (0, 1) (and below ``sample_rate``).
        sample_rate: Poisson sampling rate q in (0, 1]; 1 uses every record.
        adjacency: ``"add_remove"`` or ``"substitution"``.

    Returns:
        sigma: the noise standard deviation in units of the clip norm C.

    Raises:
        PrivacyError: an impossible parameter (the message quotes it).

    Example:
        >>> round(gaussian_sigma(4.9, 9e-6, sample_rate=500 / 280_000), 3)
        0.339
    """
    return _epsvec.gaussian_sigma(float(eps), float(delta), float(sample_rate), adjacency)


def gaussian_epsilon(sigma: float, delta: float, *, sample_rate: float = 1.0, adjacency: str = "add_remove") -> float:
    """The smallest eps for which one release with noise multiplier ``sigma`` is (eps, delta)-DP."""
    return _epsvec.gaussian_epsilon(float(sigma), float(delta), float(sample_rate), adjacency)


def gaussian_delta(sigma: float, eps: float, *, sample_rate: float = 1.0, adjacency: str = "add_remove") -> float:
    """The tight delta(eps) of one release with noise multiplier ``sigma`` (its privacy profile)."""
    return _epsvec.gaussian_delta(float(sigma), float(eps), float(sample_rate), adjacency)


def noisy_histogram(bins: Sequence[int], n_bins: int, sigma: float, *, sample_rate: float = 1.0,
                    noise_seed: int | None = None) -> tuple[np.ndarray, dict]:
    """The one histogram release (the shot vote, the length histogram):
    record ``i`` counts once in bin ``bins[i]`` (L2 sensitivity 1: clip norm
    1), each kept by a secret Poisson coin at ``sample_rate``, and Gaussian
    noise of std ``sigma`` is added, all inside ``PrivateRelease``. Returns
    the noisy counts ``[n_bins]`` and the release's public info."""
    rows = np.zeros((len(bins), n_bins), dtype=np.float32)
    rows[np.arange(len(bins)), np.asarray(bins, dtype=np.int64)] = 1.0
    release = _epsvec.PrivateRelease(1, n_bins, 1.0, sample_rate, noise_seed)
    release.offer_rows(rows)
    [(noisy, info)] = release.finish([sigma], normalise=False)
    return noisy[0].astype(np.float64), info
