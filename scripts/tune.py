"""Tune synthesis defaults on corpora that the reported results do NOT use.

    python scripts/tune.py '{}' '{"method": "zero_shot"}' '{"fixed_shots": "private"}' ...

Each argument is a set of `epsvec.synthesize` options on top of the
protocol's (eps 4, n = 100 per class, max_new_tokens 48); every set runs on
each tuning corpus and seed and prints pooled MAUVE: the synthetic texts of
all classes against the held-out real texts of all classes (200 private and
200 held-out records per class), mean ± std over seeds, with mean words per
sample and wall seconds.

TUNE_MODEL picks the model (e.g. gemma-3-270m; default: the embedded one).
Corpora (TUNE_CORPORA, comma-separated):
- amazon, tweets, nyt: VADER's human-rated snippets (Hutto & Gilbert,
  ICWSM 2014), shipped in the vaderSentiment 3.3.2 source distribution:
  Amazon product-review sentences, tweets, New York Times editorial
  sentences; label = sign of the mean human rating. Downloaded from PyPI
  on first use into ~/.cache/epsvec/vader.
- pang_lee (100 sentences per class: the vector reads the same sentences
  MAUVE compares against) and abc_news (one class, 150/149): gensim 4.4.0's
  test data (pip install --no-deps gensim==4.4.0).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

import epsvec
from epsvec import metrics

SEEDS = [int(s) for s in os.environ.get("TUNE_SEEDS", "0").split(",")]
N = int(os.environ.get("TUNE_N", "100"))
PER_CLASS = 200
CORPORA = os.environ.get("TUNE_CORPORA", "amazon,tweets,nyt").split(",")
PROTOCOL = {"eps": 4, "max_new_tokens": 48}
VADER = os.path.expanduser("~/.cache/epsvec/vader/hutto_ICWSM_2014")
VADER_FILES = {"amazon": ("amazonReviewSnippets_GroundTruth.txt", "product reviews"),
               "tweets": ("tweets_GroundTruth.txt", "tweets"),
               "nyt": ("nytEditorialSnippets_GroundTruth.txt", "newspaper editorial sentences")}


def _vader_dir() -> str:
    if not os.path.isdir(VADER):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            "-d", tmp, "vaderSentiment==3.3.2"], check=True)
            with tarfile.open(glob.glob(os.path.join(tmp, "vaderSentiment-*.tar.gz"))[0]) as sdist:
                inner = next(m for m in sdist.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
                with tarfile.open(fileobj=sdist.extractfile(inner)) as resources:
                    resources.extractall(os.path.dirname(VADER), filter="data")
    return VADER


def _vader(file: str) -> dict:
    by_label = {"positive": [], "negative": []}
    with open(os.path.join(_vader_dir(), file), encoding="utf-8-sig", errors="replace") as f:
        for line in f:
            _, score, text = line.rstrip("\n").split("\t", 2)
            if float(score) != 0 and text.strip():
                by_label["positive" if float(score) > 0 else "negative"].append(text.strip())
    return by_label


def _gensim_file(name: str) -> list[str]:
    spec = importlib.util.find_spec("gensim")
    if spec is None:
        sys.exit("pip install --no-deps gensim==4.4.0 (only its test data is read)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "test", "test_data", name)
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f if line.strip()]


def _split(by_label: dict, rng) -> tuple[dict, dict, dict]:
    """private, held-out and public (two records per class outside both) texts."""
    private, held_out, public = {}, {}, {}
    for label, texts in by_label.items():
        texts = [texts[i] for i in rng.permutation(len(texts))]
        private[label], held_out[label] = texts[:PER_CLASS], texts[PER_CLASS:2 * PER_CLASS]
        public[label] = texts[2 * PER_CLASS:2 * PER_CLASS + 2]
    return private, held_out, public


def corpus(name: str) -> tuple[str, dict, dict]:
    """(domain, private, held-out, public), each {label: texts}."""
    rng = np.random.default_rng(0)
    if name in VADER_FILES:
        file, domain = VADER_FILES[name]
        return (domain, *_split(_vader(file), rng))
    if name == "pang_lee":
        polarity = {"positive": [], "negative": []}
        for line in _gensim_file("pang_lee_polarity.cor"):
            tag, text = line.split(" ", 1)
            polarity["positive" if tag == "__label__pos" else "negative"].append(text)
        return "short movie review sentences", polarity, polarity, {c: t[:2] for c, t in polarity.items()}
    if name == "abc_news":
        news = _gensim_file("lee_background.cor")
        news = [news[i] for i in rng.permutation(len(news))]
        return "news articles", {None: news[:150]}, {None: news[150:-2]}, {None: news[-2:]}
    sys.exit(f"unknown corpus {name!r}")


def flatten(by_label: dict) -> tuple[list[str], list]:
    """``{label: texts}`` as parallel lists of texts and labels."""
    return [t for c in by_label for t in by_label[c]], [c for c in by_label for _ in by_label[c]]


def score(model, options: dict, domain: str, private: dict, held_out: dict, public: dict, seed: int
          ) -> tuple[float, float]:
    """Pooled MAUVE of one run and its mean words per sample. ``"fixed_shots":
    "public"`` gives the two public real records per class as shots."""
    if options.get("fixed_shots") == "public":
        options = {**options, "fixed_shots": public}
    texts, labels = flatten(private)
    labelled = None not in private
    out = epsvec.synthesize(texts, N, labels=labels if labelled else None,
                            classes=list(private) if labelled else None, model=model, domain=domain, seed=seed,
                            progress=False, **{**PROTOCOL, **options})
    real = flatten(held_out)[0]
    mauve = metrics.mauve(real, out.texts, seeds=(0, 1, 2)).mean
    return mauve, float(np.mean([len(t.split()) for t in out.texts]))


def main() -> None:
    model = epsvec.load_model(os.environ.get("TUNE_MODEL") or None)
    data = {name: corpus(name) for name in CORPORA}
    for arg in sys.argv[1:]:
        options = json.loads(arg)
        cells = []
        for name, parts in data.items():
            start = time.time()
            runs = [score(model, options, *parts, seed) for seed in SEEDS]
            m = [r[0] for r in runs]
            cells.append(f"{name} {np.mean(m):.3f}±{np.std(m):.3f} ({np.mean([r[1] for r in runs]):.0f}w "
                         f"{(time.time() - start) / len(SEEDS):.0f}s)")
        print(f"{arg:50s} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
