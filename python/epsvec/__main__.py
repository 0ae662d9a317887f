"""`python -m epsvec`: load the embedded default model and show what the
engine reads from its residual stream."""

from __future__ import annotations

import time

import numpy as np

import epsvec

SENTENCES = [
    "A gripping, beautifully acted thriller that never lets go.",
    "Tedious and shapeless; I checked my watch twice in the first hour.",
    "The central performance is a marvel of restraint.",
    "The plot is hollow and the jokes land with a thud.",
]


def main() -> None:
    start = time.perf_counter()
    model = epsvec.load_model()
    print(f"epsvec {epsvec.__version__}: loaded {model} in {time.perf_counter() - start:.1f}s")

    start = time.perf_counter()
    states = model.hidden_states(SENTENCES, pool="mean")
    print(f"mean-pooled residual stream {states.shape} (texts, layers, hidden) in {time.perf_counter() - start:.2f}s")

    print("\nnorm of the pooled state per block: " + " ".join(f"{n:.0f}" for n in np.linalg.norm(states, axis=-1).mean(0)))

    # The first token is an "attention sink" with a huge state in the middle
    # blocks; mean over the other tokens so sentences can be told apart.
    layer = model.config.num_layers // 2
    tokens = model.hidden_states(SENTENCES, layers=[layer], pool=None)
    pooled = np.stack([t[1:, 0].mean(axis=0) for t in tokens])
    unit = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
    print(f"\ncosine similarity of the sentences at block {layer} (first token skipped):")
    for i, text in enumerate(SENTENCES):
        print("  " + " ".join(f"{c:5.2f}" for c in unit @ unit[i]) + f"  {text[:50]}")


if __name__ == "__main__":
    main()
