"""One rule for every seed derived from a user's seed.

Each random stream of a seeded run is ``derive_seed(seed, purpose, *ids)``:
a hash of the seed, what the stream is for ("negatives", "samples", ...)
and whatever names it (class, attempt), so no two purposes share a stream
(synthetic sample k and public negative k used to). The privacy noise has
its own, tests-only seed (``noise_seed``) and never comes from ``seed``.
"""

from __future__ import annotations

import hashlib

__all__ = ["derive_seed"]


def derive_seed(seed: int | None, purpose: str, *ids) -> int | None:
    """A 63-bit seed for one purpose; None (OS entropy) when ``seed`` is None."""
    if seed is None:
        return None
    key = repr((int(seed), purpose, *(str(i) for i in ids))).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1
