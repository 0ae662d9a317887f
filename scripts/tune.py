"""Tune synthesis defaults on corpora that are NOT used for the reported
numbers: gensim's test data (Pang & Lee movie-review sentences, two
classes; ABC news articles, one class). Install: pip install --no-deps gensim==4.4.0

    python scripts/tune.py '{"method": "epsvec", "strength": 0.08}' '{"method": "fixed_shot"}' ...

Each argument is a set of `epsvec.synthesize` options (eps defaults to 4);
every set runs on both tuning corpora with each seed and prints per-class
MAUVE (mean over generation seeds) against real text of that corpus, cut
to the same token budget as the samples (max_new_tokens).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time

import numpy as np

import epsvec
from epsvec import metrics

SEEDS = [int(s) for s in os.environ.get("TUNE_SEEDS", "0,1").split(",")]
N = int(os.environ.get("TUNE_N", "100"))
CORPORA = os.environ.get("TUNE_CORPORA", "pang_lee,abc_news").split(",")


def _gensim_file(name: str) -> list[str]:
    spec = importlib.util.find_spec("gensim")
    if spec is None:
        sys.exit("pip install --no-deps gensim==4.4.0 (only its test data is read)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "test", "test_data", name)
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f if line.strip()]


def corpora() -> dict:
    """name -> (domain, private {label: texts}, held-out {label: texts})."""
    polarity = {"positive": [], "negative": []}
    for line in _gensim_file("pang_lee_polarity.cor"):
        tag, text = line.split(" ", 1)
        polarity["positive" if tag == "__label__pos" else "negative"].append(text)
    # 100 sentences per class: too few to split, so the vector reads the same
    # sentences MAUVE compares against (fine for choosing defaults).
    news = _gensim_file("lee_background.cor")
    rng = np.random.default_rng(0)
    news = [news[i] for i in rng.permutation(len(news))]
    found = {
        "pang_lee": ("short movie review sentences", polarity, polarity),
        "abc_news": ("news articles", {None: news[:150]}, {None: news[150:]}),
    }
    return {name: found[name] for name in CORPORA}


def run(model, options: dict, data: dict) -> dict:
    scores = {}
    for name, (domain, private, held_out) in data.items():
        texts = [t for c in private for t in private[c]]
        labels = None if None in private else [c for c in private for _ in private[c]]
        per_seed = []
        for seed in SEEDS:
            out = epsvec.synthesize(texts, N, labels=labels, classes=None if labels is None else list(private),
                                    model=model, domain=domain, seed=seed, progress=False,
                                    **{"eps": 4, **options})
            cap = options.get("max_new_tokens", 64)
            per_class = [metrics.mauve(metrics.truncate(held_out[c], model, cap),
                                       [t for t, l in zip(out.texts, out.labels) if l == c],
                                       seeds=(0, 1, 2)).mean for c in held_out]
            per_seed.append(float(np.mean(per_class)))
        words = float(np.mean([len(t.split()) for t in out.texts]))
        scores[name] = (float(np.mean(per_seed)), float(np.std(per_seed)), words)
    return scores


def main() -> None:
    data, model = corpora(), epsvec.load_model()
    for arg in sys.argv[1:]:
        start = time.time()
        scores = run(model, json.loads(arg), data)
        cells = "  ".join(f"{k} {m:.3f}±{s:.3f} ({w:.0f} words)" for k, (m, s, w) in scores.items())
        print(f"{arg:60s} {cells}  [{time.time() - start:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
