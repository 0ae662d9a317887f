"""Ablation: the same steered samples scored raw (stripped only), tidied
(wrapping quotes and tag fragments off) and tidied with a capped sample
ended at its last complete sentence (`epsvec.tidy`). Paired, so the rows
differ only by the post-processing:

    TUNE_CORPORA=amazon,tweets,nyt TUNE_SEEDS=0,1,2 python scripts/ablate_tidy.py

The protocol of scripts/tune.py (eps 4, n = 100 per class, 48 new tokens,
pooled MAUVE against the held-out records); TUNE_MODEL picks the model.
Prints per seed the three MAUVE figures, the share of samples the cap
stopped and that opened with a quote, and mean words (raw / tidied, real).
"""

from __future__ import annotations

import os
import sys

import numpy as np

import epsvec
from epsvec import metrics
from epsvec.seeds import derive_seed
from epsvec.synthesis import private_steps
from epsvec.tidy import tidy

sys.path.insert(0, os.path.dirname(__file__))
import tune  # noqa: E402


def words(texts: list[str]) -> float:
    return float(np.mean([len(t.split()) for t in texts]))


def main() -> None:
    model = epsvec.load_model(os.environ.get("TUNE_MODEL") or None)
    max_new_tokens = tune.PROTOCOL["max_new_tokens"]
    for name in tune.CORPORA:
        domain, private, held_out, _ = tune.corpus(name)
        texts, labels = tune.flatten(private)
        real = tune.flatten(held_out)[0]
        rows = []
        for seed in tune.SEEDS:
            _, plans, _ = private_steps(texts, tune.PROTOCOL["eps"], labels=labels, classes=list(private), model=model,
                                        domain=domain, seed=seed, progress=False, max_new_tokens=max_new_tokens)
            drawn = [g for plan in plans for g in model.generate(
                [plan.prompt] * tune.N, steer=plan.vector, strength=model.recipe.strength_for([plan.vector]),
                max_new_tokens=max_new_tokens, stop=plan.format.stop, seed=derive_seed(seed, "samples", plan.label),
                return_ids=True, add_special_tokens=plan.format.add_special_tokens)]
            raw = [g.text.strip() or "." for g in drawn]
            tidied = [tidy(g.text) or "." for g in drawn]
            ended = [tidy(g.text, g.finish_reason == "length") or "." for g in drawn]
            scores = [metrics.mauve(real, s, seeds=(0, 1, 2)).mean for s in (raw, tidied, ended)]
            rows.append(scores)
            print(f"{name} seed {seed}: raw {scores[0]:.3f} tidy {scores[1]:.3f} tidy+sentence end {scores[2]:.3f}  "
                  f"capped {np.mean([g.finish_reason == 'length' for g in drawn]):.2f} "
                  f"quoted {np.mean([t.startswith(chr(34)) for t in raw]):.2f} "
                  f"words {words(raw):.1f}/{words(ended):.1f} real {words(real):.1f}", flush=True)
        m = np.array(rows)
        print(f"{name} mean: raw {m[:, 0].mean():.3f} tidy {m[:, 1].mean():.3f} tidy+sentence end {m[:, 2].mean():.3f}",
              flush=True)


if __name__ == "__main__":
    main()
