"""Ablation: denoise each released direction by projecting it onto the top-k
principal directions of public negatives' pooled states at that layer.

Free under DP (post-processing of the released vector with public data
only). One vector per class is released once (eps 4, the defaults of
scripts/tune.py's protocol), then every k steers the same samples' seeds,
so the rows differ only by the projection:

    TUNE_CORPORA=amazon,tweets python scripts/ablate_projection.py

Prints pooled MAUVE per k ("none" = the released direction as is) and the
share of the direction's norm that the projection keeps (pure noise would
keep about sqrt(k / hidden)).
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

import epsvec
from epsvec import metrics, prompts
from epsvec.extract import model_negatives, pooled_states
from epsvec.seeds import derive_seed
from epsvec.synthesis import generate_for_class, private_steps

KS = [None, 4, 16, 64, 256]
PUBLIC_NEGATIVES = 256


def principal_directions(model, plan) -> list[np.ndarray]:
    """Per released layer, the right singular vectors of the centred pooled
    states of fresh public negatives, written from the plan's own prompt."""
    negatives = model_negatives(model, plan.prompt, plan.format, PUBLIC_NEGATIVES, 1.0, 48, 16, False, 999)
    _, pieces, _ = prompts.with_examples(model, plan.prefix, negatives, plan.label_text, 256, plan.format)
    states = pooled_states(model, pieces, plan.vector.layers, "mean", 16).astype(np.float64)
    bases = []
    for i in range(states.shape[1]):
        centred = states[:, i] - states[:, i].mean(axis=0)
        bases.append(np.linalg.svd(centred, full_matrices=False)[2])
    return bases


def projected(plan, bases, k):
    """The plan with its vector projected onto the top-k directions (renormalised), and the norm share kept."""
    if k is None:
        return plan, 1.0
    directions, kept = {}, []
    for basis, layer in zip(bases, plan.vector.layers):
        d = plan.vector.directions[layer].astype(np.float64)
        p = basis[:k].T @ (basis[:k] @ d)
        kept.append(np.linalg.norm(p) / np.linalg.norm(d))
        directions[layer] = (p / np.linalg.norm(p)).astype(np.float32)
    return dataclasses.replace(plan, vector=dataclasses.replace(plan.vector, directions=directions)), float(np.mean(kept))


def main() -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    import tune

    model = epsvec.load_model(os.environ.get("TUNE_MODEL") or None)
    for name in tune.CORPORA:
        domain, private, held_out, _ = tune.corpus(name)
        records, labels = tune.flatten(private)
        _, plans, _ = private_steps(records, tune.PROTOCOL["eps"], labels=labels, classes=list(private), model=model,
                                    domain=domain, seed=0, progress=False,
                                    max_new_tokens=tune.PROTOCOL["max_new_tokens"])
        bases = {plan.label: principal_directions(model, plan) for plan in plans}
        real = tune.flatten(held_out)[0]
        for k in KS:
            texts, kept = [], []
            for plan in plans:
                steered, share = projected(plan, bases[plan.label], k)
                kept.append(share)
                texts += generate_for_class(model, steered, range(tune.N), seed=derive_seed(0, "samples", plan.label),
                                            strength=0.06, temperature=1.0, top_p=1.0,
                                            max_new_tokens=tune.PROTOCOL["max_new_tokens"], batch_size=64)
            score = metrics.mauve(real, texts, seeds=(0, 1, 2)).mean
            print(f"{name} k={k or 'none':>4}  MAUVE {score:.3f}  norm kept {np.mean(kept):.2f}", flush=True)


if __name__ == "__main__":
    main()
