"""`epsvec.extract`: the one step that reads private data (METHOD.md §3-4).

For each private record the model reads two prompts that differ only in
their data shot: the record (positive) and a public negative (the model's
own sample from the same prompt). The difference of their pooled residual
streams at the chosen layers, clipped jointly in L2 to ``clip_norm``, is
summed over the records; Gaussian noise calibrated to (eps, delta) by the
exact accountant is added; each layer is normalised to a unit vector.

Nothing chosen from private data leaves un-noised: layers, clip norm and
pooling come from the model's depth and from public (model-generated)
text; the Poisson sample, when asked for, is drawn inside the mechanism
from a secret source; the per-class record counts are not stored in the
vector (they are private). The set of class labels is treated as public.
Warnings and errors (e.g. delta > 1/N) go to the data holder who runs
this function, not into the released vector.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _epsvec, prompts
from .data import records_from
from .errors import InvalidInputError, PrivacyError
from .model import REPEATED_PROMPT_ROWS, Model, _progress, load_model
from .privacy import gaussian_sigma
from .vector import DatasetVector

__all__ = ["extract", "auto_layers"]

POOLS = ("mean", "example", "last")
PUBLIC_PAIRS = 16  # negative-vs-negative pairs that set clip_norm="auto"


def auto_layers(num_layers: int) -> list[int]:
    """Blocks at about 45-57% of the depth (e.g. 14-17 of 30), where METHOD.md
    §7 found steering works best; a function of depth only."""
    first, last = round(0.45 * num_layers), round(0.57 * num_layers)
    return list(range(first, max(first, last) + 1))


def extract(
    texts: Sequence[str],
    eps: float,
    *,
    delta: float = 1e-5,
    model: Model | str | None = None,
    labels: Sequence[Any] | None = None,
    negatives: Sequence[str] | None = None,
    domain: str | None = None,
    fixed_shots: Sequence[str] | None = None,
    layers: str | Sequence[int] = "auto",
    clip_norm: str | float = "auto",
    pool: str = "mean",
    sample_size: int | None = None,
    sample_rate: float | None = None,
    adjacency: str = "add_remove",
    batch_size: int = 16,
    progress: bool = True,
    seed: int | None = None,
    max_example_tokens: int = 800,
    negative_temperature: float = 1.0,
    negative_max_new_tokens: int = 96,
    num_negatives: int = 64,
    text_column: str = "text",
    label_column: str | None = "label",
) -> DatasetVector | dict[Any, DatasetVector]:
    """Extract an (eps, delta)-DP dataset vector from private texts.

    Args:
        texts: The private records: a list of strings, or a
            ``datasets.Dataset`` (``text_column``, labels from ``label_column``).
        eps: Privacy budget of this release (finite, > 0).
        delta: (0, 1); should be well below 1/len(texts).
        model: A loaded model or a path; the embedded default if None.
        labels: One label per text: one vector per class (classes are
            disjoint, so the budget holds per record: parallel composition).
        negatives: Public texts paired with the records (cyclically); by
            default ``num_negatives`` of the model's own samples from the
            fixed-shot prompt.
        domain: What the texts are, for the prompt ("movie reviews").
        fixed_shots: Public example texts placed in every prompt, or
            ``{label: texts}`` for per-class shots.
        layers: Blocks to release, or "auto" (by depth).
        clip_norm: L2 bound C on each record's difference, or "auto" (the
            median norm of differences between public negatives).
        pool: "mean" (every prompt token but the first, an attention sink
            whose huge state would dominate), "example" (the data shot's
            own tokens) or "last".
        sample_size: Use a Poisson sample of about this many records per
            class (rate sample_size / N, drawn inside the mechanism),
            amplifying privacy. The rate, and so each class size N, is part
            of the release (treated as public, as in DP-SGD).
        sample_rate: The Poisson rate itself, instead of ``sample_size``:
            keeps the class sizes out of the release.
        adjacency: "add_remove" or "substitution" (sensitivity 2C).
        batch_size: Prompts per forward pass.
        progress: Show progress bars.
        seed: For tests only: makes sampling and noise reproducible; the
            vector records that it was seeded. None uses OS entropy.
        max_example_tokens: Private examples are cut to this many tokens,
            at a sentence end (the count is reported).
        negative_temperature: Sampling temperature of the default negatives.
        negative_max_new_tokens: Length cap of the default negatives.
        text_column, label_column: Columns of a ``datasets.Dataset``.
        num_negatives: How many default negatives to generate per class (a
            constant, so the work done does not depend on private counts).

    Returns:
        A :class:`DatasetVector`, or ``{label: DatasetVector}`` with labels.

    Raises:
        TypeError: texts are not strings.
        InvalidInputError: empty input, mismatched labels, bad options.
        PrivacyError: impossible eps, delta or sample size.
    """
    texts, labels = records_from(texts, labels, text_column, label_column)
    texts = _check_texts(texts)
    _check_privacy(eps, delta, adjacency)
    if pool not in POOLS:
        raise InvalidInputError(f"pool must be one of {POOLS}, got {pool!r}")
    if isinstance(max_example_tokens, bool) or not isinstance(max_example_tokens, int) or max_example_tokens < 1:
        raise InvalidInputError(f"max_example_tokens must be a positive integer, got {max_example_tokens!r}")
    if not isinstance(model, Model):
        model = load_model(model)
    layer_list = _resolve_layers(layers, model.config.num_layers)
    shots_of = _shots_by_label(fixed_shots)
    public = _check_texts(negatives, "negatives") if negatives is not None else None
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise InvalidInputError(f"num_negatives must be a positive integer, got {num_negatives!r}")

    if labels is None:
        groups = {None: texts}
    else:
        labels = list(labels)
        if len(labels) != len(texts):
            raise InvalidInputError(f"labels has {len(labels)} entries for {len(texts)} texts")
        groups = {}
        for text, label in zip(texts, labels):
            groups.setdefault(label, []).append(text)

    vectors = {}
    for i, (label, records) in enumerate(groups.items()):
        [vectors[label]] = _extract_class(
            model, records, label, eps=[eps], delta=delta, negatives=public, domain=domain, shots=shots_of(label),
            layers=layer_list, clip_norm=clip_norm, pool=pool, sample_size=sample_size, sample_rate=sample_rate,
            adjacency=adjacency, batch_size=batch_size, progress=progress, seed=class_seed(seed, i),
            max_example_tokens=max_example_tokens, temperature=negative_temperature,
            max_new_tokens=negative_max_new_tokens, num_negatives=num_negatives,
        )
    return vectors[None] if labels is None else vectors


def class_seed(seed: int | None, index: int) -> int | None:
    """A test seed per class, so classes draw independent streams."""
    return None if seed is None else seed + 1_000_003 * index


def _shots_by_label(fixed_shots):
    """``label -> list of public shots`` from a list (same for every class) or a mapping."""
    if isinstance(fixed_shots, Mapping):
        table = {label: _check_texts(shots, f"fixed_shots[{label!r}]", allow_empty=True)
                 for label, shots in fixed_shots.items()}
        def lookup(label):
            if label not in table:
                raise InvalidInputError(f"fixed_shots has no entry for the class {label!r}")
            return table[label]
        return lookup
    shots = _check_texts(fixed_shots, "fixed_shots", allow_empty=True) if fixed_shots else []
    return lambda label: shots


def _extract_class(model: Model, records: list[str], label, *, eps, delta, negatives, domain, shots, layers, clip_norm,
                   pool, sample_size, adjacency, batch_size, progress, seed, max_example_tokens, temperature,
                   max_new_tokens, num_negatives, sample_rate=None) -> list[DatasetVector]:
    """One class's vectors, one per budget in ``eps`` (a list): the records
    are read once, and each budget gets its own independent noise draw."""
    n = len(records)
    rate = _sample_rate(sample_size, sample_rate, n)
    # Warnings go to the data holder only; nothing here enters the release.
    if delta > 1 / max(n, 1):
        warnings.warn(f"delta = {delta:g} exceeds 1/N = {1 / n:g} for {n} records: the guarantee is weak", stacklevel=3)
    label_text = None if label is None else str(label)
    prefix_text = prompts.prefix(domain, label_text, shots)
    # The Poisson sample is drawn inside the mechanism's secret source; only
    # the sampled records are read.
    chosen = list(range(n)) if rate == 1.0 else _epsvec.poisson_sample(n, rate, seed)
    if negatives is None:
        negatives = _model_negatives(model, prefix_text, label_text, max(num_negatives, 2 * PUBLIC_PAIRS), temperature,
                                     max_new_tokens, batch_size, progress, seed)
    # Each public negative is read once; private example k is paired with negative k mod count.
    negative_prompts = [prompts.with_example(model, prefix_text, t, label_text, max_example_tokens)[0] for t in negatives]
    negative_states = _pooled(model, negative_prompts, layers, pool, batch_size)
    public_pairs = [j % len(negatives) for j in range(2 * PUBLIC_PAIRS)]
    if clip_norm == "auto":
        public_states = negative_states[public_pairs]
        norms = np.linalg.norm((public_states[0::2] - public_states[1::2]).reshape(PUBLIC_PAIRS, -1), axis=1)
        clip = float(np.median(norms))
        if not clip > 0:
            raise InvalidInputError("clip_norm='auto' needs several distinct public negatives; pass more, or a clip_norm")
    else:
        clip = float(clip_norm)
        if not (math.isfinite(clip) and clip > 0):
            raise InvalidInputError(f"clip_norm must be a finite number > 0 or 'auto', got {clip_norm!r}")

    pieces, truncated = [], 0
    for r in chosen:
        positive, cut = prompts.with_example(model, prefix_text, records[r], label_text, max_example_tokens)
        pieces.append(positive)
        truncated += cut
    hidden = model.config.hidden_size
    if pieces:
        states = _pooled(model, pieces, layers, pool, batch_size, progress)
        paired = negative_states[np.arange(len(chosen)) % len(negatives)]
        rows = (states - paired).reshape(len(chosen), len(layers) * hidden)
    else:
        rows = np.zeros((0, len(layers) * hidden), dtype=np.float32)
    if not np.isfinite(rows).all():
        raise InvalidInputError("the model produced NaN or infinite activations; try dtype='float32'")
    residual_norms = _residual_norms(model, [negative_prompts[j] for j in public_pairs[:PUBLIC_PAIRS]], layers, batch_size)
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    vectors = []
    for j, e in enumerate(eps):
        sigma = gaussian_sigma(e, delta, sample_rate=rate, adjacency=adjacency)
        # The noise's norm is about sigma*C*sqrt(dim); the sum of n clipped
        # records is at most n*C. Below that the vector is mostly noise.
        if n < sigma * math.sqrt(rows.shape[1]):
            warnings.warn(f"class {label_text!r}: {n} records against noise of norm ~{sigma * math.sqrt(rows.shape[1]):.0f} C; "
                          "the vector will be mostly noise (use more records, a larger eps, or fewer layers)", stacklevel=3)
        # Each budget its own noise: releases sharing one draw would reveal the sum. (A test seed
        # per budget, offset beyond class_seed's strides so no class's draw is reused.)
        noise_seed = None if seed is None else seed + (j << 40)
        directions, report = _epsvec.release_vector(rows, len(layers), clip, sigma, noise_seed)
        privacy = {
            "eps": e, "delta": delta, "sigma": sigma, "clip_norm": clip, "sample_rate": rate,
            "adjacency": adjacency, "unit": "one record", "pool": pool,
            "mechanism": "Gaussian mechanism on the sum of per-record differences clipped jointly in L2, "
                         + ("over a Poisson sample" if rate < 1 else "over every record")
                         + "; per-layer normalisation is post-processing",
            "accountant": "analytic Gaussian (Balle & Wang 2018)" if rate == 1
            else "exact privacy profile of the Poisson-subsampled Gaussian",
            "noise": report["noise"], "seeded": seed is not None,
            "clip_norm_source": "median norm of public negative-vs-negative differences" if clip_norm == "auto" else "given",
            "truncated_examples": truncated,
        }
        vectors.append(DatasetVector({layer: directions[i] for i, layer in enumerate(layers)}, label_text,
                                     model.fingerprint(), privacy, residual_norms,
                                     {"domain": domain, "fixed_shots": list(shots)}))
    return vectors


def _residual_norms(model: Model, pieces: list[prompts.PromptIds], layers: list[int], batch_size: int) -> dict[int, float]:
    """Mean L2 norm of a token's state per layer over public prompts (the first, sink token skipped)."""
    states = model._engine.token_states([p.ids for p in pieces], layers, batch_size)
    norms = np.concatenate([np.linalg.norm(s[1:], axis=-1) for s in states])  # [tokens, layers]
    return {layer: float(norms[:, i].mean()) for i, layer in enumerate(layers)}


def _pooled(model: Model, pieces: list[prompts.PromptIds], layers: list[int], pool: str, batch_size: int,
            progress: bool = False) -> np.ndarray:
    """Pooled states ``[len(pieces), n_layers, hidden]``, in chunks so a progress bar can follow."""
    context = model.config.context_length
    if any(len(p.ids) > context for p in pieces):
        raise InvalidInputError(f"a prompt exceeds the model's context of {context} tokens; "
                                "lower max_example_tokens or use fewer/shorter fixed_shots")
    out = []
    chunk = 8 * batch_size
    with _progress(len(pieces), progress, "reading records") as bar:
        for start in range(0, len(pieces), chunk):
            part = pieces[start : start + chunk]
            ids = [p.ids for p in part]
            if pool == "last":
                out.append(model._engine.pooled_states(ids, layers, "last", batch_size))
            else:
                out.append(model._engine.pooled_states(ids, layers, "mean", batch_size, [_weights(p, pool) for p in part]))
            bar.update(len(part))
    return np.concatenate(out)


def _weights(piece: prompts.PromptIds, pool: str) -> list[float]:
    w = np.zeros(len(piece.ids), dtype=np.float32)
    if pool == "mean":
        w[1:] = 1.0  # skip the attention sink
    else:
        w[piece.example] = 1.0
    return w.tolist()


def _model_negatives(model, prefix_text, label, count, temperature, max_new_tokens, batch_size, progress, seed):
    """The public prior: the unsteered model's own samples from the fixed-shot prompt."""
    prompt = prefix_text + prompts.opening(label)
    texts = model.generate([prompt] * count, max_new_tokens=max_new_tokens, temperature=temperature,
                           stop=prompts.STOP, seed=seed, batch_size=REPEATED_PROMPT_ROWS * batch_size,
                           progress=progress)
    return [t.strip() or "." for t in texts]


def _sample_rate(sample_size, sample_rate, n: int) -> float:
    if sample_size is not None and sample_rate is not None:
        raise PrivacyError("give sample_size or sample_rate, not both")
    if sample_rate is not None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not 0 < sample_rate <= 1:
            raise PrivacyError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        return float(sample_rate)
    if sample_size is None:
        return 1.0
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or not 0 < sample_size <= n:
        raise PrivacyError(f"sample_size must be an integer in [1, {n}] for {n} records, got {sample_size!r}")
    return sample_size / n


def _resolve_layers(layers, num_layers: int) -> list[int]:
    if isinstance(layers, str):
        if layers != "auto":
            raise InvalidInputError(f"layers must be 'auto' or a list of block indices, got {layers!r}")
        return auto_layers(num_layers)
    out = sorted({int(l) for l in layers})
    if not out or out[0] < 0 or out[-1] >= num_layers:
        raise InvalidInputError(f"layers must be block indices in [0, {num_layers - 1}], got {list(layers)!r}")
    return out


def _check_privacy(eps, delta, adjacency) -> None:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not (math.isfinite(eps) and eps > 0):
        raise PrivacyError(f"eps must be a finite number > 0, got {eps!r}")
    if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not 0 < delta < 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
    if adjacency not in ("add_remove", "substitution"):
        raise PrivacyError(f"adjacency must be 'add_remove' or 'substitution', got {adjacency!r}")


def _check_texts(texts, name: str = "texts", allow_empty: bool = False) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    if not texts and not allow_empty:
        raise InvalidInputError(f"{name} is empty; pass at least one string")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] is a {type(t).__name__}, not a string")
        if not t.strip():
            raise InvalidInputError(f"{name}[{i}] is empty")
    return texts
