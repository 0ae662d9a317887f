"""`epsvec.synthesize`: private texts in; synthetic texts and a privacy
report that adds up every private step out.

Per class (classes are disjoint, so each record takes part in one class's
steps only: parallel composition across classes):

1. fixed shots: public texts, the model's own zero-shot samples (free), or
   k of the model's zero-shot candidates chosen by a DP vote of the private
   records (Gaussian noise on the vote histogram; costs ``shots_eps``);
2. the dataset vector (`epsvec.extract`; costs the rest of the budget);
3. steered generation of ``n`` samples (post-processing: free).

The private steps compose by basic sequential composition: their epsilons
add and so do their deltas. The number of samples per class is ``n`` for
every class, not read from the data, so it costs nothing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _epsvec, prompts
from ._epsvec import SamplingParams
from .data import records_from
from .errors import InvalidInputError, PrivacyError
from .extract import (_check_privacy, _check_texts, _extract_class, _resolve_layers, _shots_by_label, auto_layers,
                      class_seed)
from .model import REPEATED_PROMPT_ROWS, Model, load_model, mean_states_without_sink
from .privacy import gaussian_sigma
from .vector import DatasetVector

__all__ = ["synthesize", "SyntheticData", "ClassPlan", "METHODS"]

METHODS = ("epsvec", "fixed_shot", "zero_shot")
SHOT_CANDIDATES = 32  # zero-shot candidates the shots are chosen from
# Candidates are sampled cooler than the synthetic texts: at 1.0 the small
# default model's zero-shot samples are often incoherent, and shots set the style.
SHOT_TEMPERATURE = 0.7
MIN_SHOT_WORDS = 5  # free shots: the first complete samples of at least this many words
EMPTY_RETRIES = 3  # fresh draws for a sample that came out empty


@dataclass
class ClassPlan:
    """Everything that generates one class's samples; all of it public or DP-released."""

    label: Any
    domain: str | None
    shots: list[str]
    vector: DatasetVector | None = None

    @property
    def prompt(self) -> str:
        label = None if self.label is None else str(self.label)
        return prompts.prefix(self.domain, label, self.shots) + prompts.opening(label)


@dataclass
class SyntheticData:
    """The synthetic texts, their labels, the privacy report and the plans that made them."""

    texts: list[str]
    labels: list[Any]
    report: dict[str, Any]
    plans: list[ClassPlan] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def to_dataset(self):
        """A ``datasets.Dataset`` (columns text, label); its ``info.description``
        is the privacy report as JSON."""
        import datasets

        info = datasets.DatasetInfo(description=json.dumps(self.report, indent=1))
        return datasets.Dataset.from_dict({"text": self.texts, "label": self.labels}, info=info)


def synthesize(
    texts: Any,
    n: int,
    eps: float | Sequence[float],
    *,
    labels: Sequence[Any] | None = None,
    delta: float = 1e-5,
    model: Model | str | None = None,
    domain: str | None = None,
    method: str = "epsvec",
    fixed_shots: str | Sequence[str] | Mapping[Any, Sequence[str]] | None = None,
    num_shots: int = 2,
    shots_eps: float | None = None,
    classes: Sequence[Any] | None = None,
    strength: float = 0.06,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    num_negatives: int = 64,
    max_example_tokens: int = 800,
    layers: str | Sequence[int] = "auto",
    clip_norm: str | float = "auto",
    pool: str = "mean",
    sample_size: int | None = None,
    sample_rate: float | None = None,
    adjacency: str = "add_remove",
    text_column: str = "text",
    label_column: str | None = "label",
    return_dataset: bool = False,
    batch_size: int = 16,
    progress: bool = True,
    seed: int | None = None,
) -> SyntheticData:
    """Make ``n`` synthetic samples per class from private texts, (eps, delta)-DP.

    Args:
        texts: Private records: a list of strings or a ``datasets.Dataset``.
        n: Samples generated per class (the same for every class).
        eps: Total privacy budget of every private step together (> 0);
            or a list of budgets, for a privacy-utility sweep: the records
            are read once, each budget gets its own release (own noise) and
            samples, returned as ``{eps: result}``. Each release is
            (eps, delta)-DP alone; publishing several spends the sum. A sweep
            needs public shots and no Poisson sampling.
        labels: One label per text (or ``label_column`` of a Dataset).
        delta: Total delta, (0, 1).
        model: A loaded model or a path; the embedded default if None.
        domain: What the texts are, for the prompt ("movie reviews").
        method: ``"epsvec"`` (steered), ``"fixed_shot"`` (the same prompt,
            unsteered) or ``"zero_shot"`` (no shots, unsteered): baselines
            run only their own private steps.
        fixed_shots: None (no shots: the default, which did best with the
            embedded model on public tuning data), ``"synthetic"`` (complete
            zero-shot samples of the model's own: free; what
            ``method="fixed_shot"`` uses when None), ``"private"`` (chosen
            by a DP vote of the records: costs
            ``shots_eps``), or public texts (a list, or ``{label: list}``).
        num_shots: Shots per prompt (k) for "synthetic" and "private".
        shots_eps: Budget of the private shot vote (default 0.1, with a
            tenth of delta, as in the reference); the vector gets the rest.
        classes: The public label set; by default the labels found in the
            data are treated as public (say so if they are not).
        strength: Steering strength as a fraction of the residual norm.
        temperature, top_p, max_new_tokens: Sampling of the synthetic texts.
        num_negatives: Public negatives generated per class (see :func:`epsvec.extract`).
        max_example_tokens, layers, clip_norm, pool, sample_size,
            sample_rate, adjacency: As in :func:`epsvec.extract`.
        text_column, label_column: Columns of a ``datasets.Dataset``.
        return_dataset: Return a ``datasets.Dataset`` (report in ``info.description``).
        batch_size: Prompts per forward pass (copies of one prompt, when generating, run 4x as many).
        progress: Show progress bars.
        seed: For tests and reproducible sampling only; it also makes the
            privacy noise reproducible, which voids the guarantee.

    Returns:
        :class:`SyntheticData` (texts, labels, report, plans), or a
        ``datasets.Dataset`` with ``return_dataset=True``; one per budget,
        ``{eps: ...}``, for a list of budgets.
    """
    # Check what generation needs before any budget is spent.
    _check_count(n, "n")
    SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    sweep = isinstance(eps, (list, tuple))
    eps_grid = list(eps) if sweep else [eps]
    if not eps_grid or len(set(eps_grid)) != len(eps_grid):
        raise PrivacyError(f"eps must be a number or a list of distinct numbers, got {eps!r}")
    model, releases = _private_steps_grid(
        texts, eps_grid, labels=labels, delta=delta, model=model, domain=domain, method=method,
        fixed_shots=fixed_shots, num_shots=num_shots, shots_eps=shots_eps, classes=classes, layers=layers,
        clip_norm=clip_norm, pool=pool, sample_size=sample_size, sample_rate=sample_rate, adjacency=adjacency,
        text_column=text_column, label_column=label_column, batch_size=batch_size, progress=progress, seed=seed,
        max_new_tokens=max_new_tokens, num_negatives=num_negatives, max_example_tokens=max_example_tokens,
    )
    sampling = dict(strength=strength, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    sample_seed = secrets.randbits(62) if seed is None else seed
    results = {}
    for e, (plans, report) in zip(eps_grid, releases):
        report["generation"] = {"per_class": n, "rule": "n samples for every class (not read from the data: free)",
                                **sampling}
        if sweep:
            report["sweep"] = (f"one of {len(eps_grid)} releases (eps {eps_grid}) from one read of the data, each "
                               "with its own noise; publishing several spends the sum of their eps and delta")
        out_texts, out_labels = [], []
        for i, plan in enumerate(plans):
            out_texts += generate_for_class(model, plan, range(n), seed=class_seed(sample_seed, i),
                                            batch_size=REPEATED_PROMPT_ROWS * batch_size, progress=progress, **sampling)
            out_labels += [plan.label] * n
        result = SyntheticData(out_texts, out_labels, report, plans)
        results[e] = result.to_dataset() if return_dataset else result
    return results if sweep else results[eps]


def generate_for_class(model: Model, plan: ClassPlan, indices: Sequence[int], *, seed: int, strength: float,
                       temperature: float, top_p: float, max_new_tokens: int, batch_size: int = 16,
                       progress: bool = False) -> list[str]:
    """Samples ``indices`` of one class. Sample ``j`` depends only on
    (seed, j), so a run can be split or resumed without changing it."""
    indices = list(indices)
    out = [""] * len(indices)
    todo = list(range(len(indices)))
    steer = None if plan.vector is None or strength == 0 else plan.vector
    for attempt in range(1 + EMPTY_RETRIES):
        if not todo:
            break
        # One generate call per contiguous block keeps streams = sample indices.
        for start, rows in _contiguous(indices, todo):
            texts = model.generate([plan.prompt] * len(rows), steer=steer, strength=strength, temperature=temperature,
                                   top_p=top_p, max_new_tokens=max_new_tokens, stop=prompts.STOP, seed=seed,
                                   batch_size=batch_size, progress=progress and attempt == 0,
                                   stream_start=start + attempt * (1 << 40))
            for r, text in zip(rows, texts):
                out[r] = text.strip()
        todo = [r for r in todo if not out[r]]
    return out


def _contiguous(indices: list[int], rows: list[int]):
    """Split rows into runs whose sample indices are consecutive: (first index, rows)."""
    runs = []
    for r in rows:
        if runs and indices[r] == indices[runs[-1][1][-1]] + 1:
            runs[-1][1].append(r)
        else:
            runs.append((indices[r], [r]))
    return runs


def private_steps(texts, eps, **options) -> tuple[Model, list[ClassPlan], dict]:
    """Steps 1-2 of :func:`synthesize` (the only ones that read private data):
    the model, one :class:`ClassPlan` per class and the privacy report.
    Shot candidates and negatives are the model's samples under the same
    length cap as the synthetic texts (``max_new_tokens``)."""
    model, [(plans, report)] = _private_steps_grid(texts, [eps], **options)
    return model, plans, report


def _private_steps_grid(texts, eps_grid, *, labels=None, delta=1e-5, model=None, domain=None, method="epsvec",
                        fixed_shots=None, num_shots=2, shots_eps=None, classes=None, layers="auto",
                        clip_norm="auto", pool="mean", sample_size=None, sample_rate=None, adjacency="add_remove",
                        text_column="text", label_column="label", batch_size=16, progress=True, seed=None,
                        max_new_tokens=64, num_negatives=64,
                        max_example_tokens=800) -> tuple[Model, list[tuple[list[ClassPlan], dict]]]:
    """Private steps for each budget in ``eps_grid``, reading the records once:
    ``(model, [(plans, report) per budget])``."""
    texts, labels = records_from(texts, labels, text_column, label_column)
    texts = _check_texts(texts)
    for eps in eps_grid:
        _check_privacy(eps, delta, adjacency)
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {METHODS}, got {method!r}")
    _check_count(num_shots, "num_shots")
    if fixed_shots is None and method == "fixed_shot":
        fixed_shots = "synthetic"
    private_shots = isinstance(fixed_shots, str) and fixed_shots == "private" and method != "zero_shot"
    if len(eps_grid) > 1 and (private_shots or sample_size is not None or sample_rate is not None):
        # Shared shots or a shared Poisson sample would couple the releases.
        raise InvalidInputError("an eps sweep needs public shots and no sample_size/sample_rate")
    if not isinstance(model, Model):
        model = load_model(model)
    groups = _groups(texts, labels, classes)
    budgets = [_split_budget(eps, delta, shots_eps, private_shots, vector=method == "epsvec") for eps in eps_grid]
    vote_steps = [_shot_vote_step(budgets[0]["shots"], adjacency)] if private_shots else []
    if method == "epsvec":
        layer_list = _resolve_layers(layers, model.config.num_layers)

    plans = [[] for _ in eps_grid]
    for i, (label, records) in enumerate(groups.items()):
        label_text = None if label is None else str(label)
        cseed = class_seed(seed, i)
        if method == "zero_shot" or fixed_shots is None:
            shots = []
        elif private_shots:
            shots = _vote_shots(model, records, domain, label_text, num_shots, vote_steps[0]["sigma"], batch_size,
                                progress, cseed, max_new_tokens)
        else:
            shots = _public_shots(model, fixed_shots, label, domain, label_text, num_shots, batch_size, cseed,
                                  max_new_tokens)
        vectors = [None] * len(eps_grid)
        if method == "epsvec":
            vectors = _extract_class(
                model, records, label_text, eps=[b["vector"][0] for b in budgets], delta=budgets[0]["vector"][1],
                negatives=None, domain=domain, shots=shots, layers=layer_list, clip_norm=clip_norm, pool=pool,
                sample_size=sample_size, sample_rate=sample_rate, adjacency=adjacency, batch_size=batch_size,
                progress=progress, seed=cseed, max_example_tokens=max_example_tokens, temperature=1.0,
                max_new_tokens=max_new_tokens, num_negatives=num_negatives,
            )
        for j, vector in enumerate(vectors):
            plans[j].append(ClassPlan(label, domain, shots, vector))
    out = []
    for eps, class_plans in zip(eps_grid, plans):
        steps = list(vote_steps)
        if method == "epsvec":
            steps.append(_vector_step(class_plans, adjacency, pool))
        report = _report(eps, delta, method, fixed_shots, steps, classes, seed)
        if sample_size is not None and method == "epsvec":
            report["public"].append("each class's size N, through its sample rate sample_size / N")
        out.append((class_plans, report))
    return model, out


def _vector_step(plans: list[ClassPlan], adjacency: str, pool: str) -> dict:
    v = plans[0].vector.privacy
    per_class = lambda key: {str(p.label): p.vector.privacy[key] for p in plans}
    return {"step": "dataset vector", "eps": v["eps"], "delta": v["delta"], "sigma": per_class("sigma"),
            "mechanism": v["mechanism"], "accountant": v["accountant"], "adjacency": adjacency,
            "sample_rate": per_class("sample_rate"), "clip_norm": per_class("clip_norm"),
            "clip_norm_source": v["clip_norm_source"], "layers": plans[0].vector.layers, "pool": pool}


def _report(eps, delta, method, fixed_shots, steps, classes, seed) -> dict:
    spent_eps = sum(s["eps"] for s in steps)
    spent_delta = sum(s["delta"] for s in steps)
    shots = (fixed_shots if isinstance(fixed_shots, str) else "none" if fixed_shots is None or method == "zero_shot"
             else "public texts given by the user")
    return {
        "guarantee": {"eps": spent_eps, "delta": spent_delta, "budget_eps": eps, "budget_delta": delta,
                      "unit": "one private record", "adjacency": steps[0]["adjacency"] if steps else None},
        "composition": "basic sequential composition over the private steps (eps and delta add); classes are "
                       "disjoint, so each record enters one class's steps only (parallel composition); "
                       "generation is post-processing",
        "steps": steps,
        "method": method,
        "fixed_shots": shots,
        "public": ["the model and its own generations (shot candidates, negatives)",
                   "the label set" + (" (given as classes)" if classes is not None else " (read from the data; "
                                      "assumed public)"),
                   "n, layers, strength, sampling settings"],
        "seeded": seed is not None,
    }


def _split_budget(eps, delta, shots_eps, private_shots: bool, vector: bool) -> dict:
    """The shot vote gets (shots_eps, delta / 10) when it runs (the reference's
    0.1 by default); the vector gets the rest."""
    if not private_shots:
        return {"vector": (eps, delta)}
    shots_eps = 0.1 if shots_eps is None else shots_eps
    if isinstance(shots_eps, bool) or not isinstance(shots_eps, (int, float)) or not 0 < shots_eps < eps:
        raise PrivacyError(f"shots_eps must be in (0, eps) = (0, {eps}), got {shots_eps!r}")
    budget = {"shots": (float(shots_eps), delta / 10)}
    if vector:
        budget["vector"] = (eps - shots_eps, delta - delta / 10)
    return budget


def _shot_vote_step(budget: tuple[float, float], adjacency: str) -> dict:
    e, d = budget
    return {"step": "fixed-shot selection", "eps": e, "delta": d, "sigma": gaussian_sigma(e, d, adjacency=adjacency),
            "mechanism": f"each record votes for its nearest of {SHOT_CANDIDATES} model-generated candidates "
                         "(cosine of pooled residual states); Gaussian noise on the vote histogram (L2 "
                         "sensitivity 1; with substitution calibrated to 2, above the true sqrt 2); the top "
                         "num_shots candidates are kept (post-processing)",
            "accountant": "analytic Gaussian (Balle & Wang 2018)", "adjacency": adjacency}


def _zero_shot(model, domain, label_text, count, batch_size, seed, progress=False, max_new_tokens=64) -> list:
    """The model's own samples from the prompt without shots (public), at
    SHOT_TEMPERATURE: shot candidates for both the free and the voted shots."""
    prompt = prompts.prefix(domain, label_text, []) + prompts.opening(label_text)
    return model.generate([prompt] * count, max_new_tokens=max_new_tokens, temperature=SHOT_TEMPERATURE,
                          stop=prompts.STOP, seed=seed, batch_size=REPEATED_PROMPT_ROWS * batch_size,
                          progress=progress, return_ids=True)


def _public_shots(model, fixed_shots, label, domain, label_text, k, batch_size, seed, max_new_tokens) -> list[str]:
    if not isinstance(fixed_shots, str):
        return _shots_by_label(fixed_shots)(label)
    if fixed_shots != "synthetic":
        raise InvalidInputError(f'fixed_shots must be "synthetic", "private" or a list of texts, got {fixed_shots!r}')
    samples = _zero_shot(model, domain, label_text, SHOT_CANDIDATES, batch_size, seed, max_new_tokens=max_new_tokens)
    candidates = [g.text.strip() for g in samples if g.finish_reason != "length"
                  and len(g.text.split()) >= MIN_SHOT_WORDS] or [g.text.strip() for g in samples if g.text.strip()]
    if len(candidates) < k:
        raise InvalidInputError(f"the model wrote only {len(candidates)} non-empty zero-shot samples for class "
                                f"{label_text!r}; pass fixed_shots as a list of public texts")
    return candidates[:k]


def _vote_shots(model, records, domain, label_text, k, sigma, batch_size, progress, seed, max_new_tokens=64) -> list[str]:
    """k zero-shot candidates chosen by the records' noisy nearest-candidate vote."""
    candidates = [g.text.strip() or "." for g in _zero_shot(model, domain, label_text, SHOT_CANDIDATES, batch_size,
                                                            seed, progress, max_new_tokens)]
    layer = auto_layers(model.config.num_layers)[0]
    c = _embed(model, candidates, layer, batch_size)
    r = _embed(model, records, layer, batch_size)
    votes = np.argmax(r @ c.T, axis=1) if len(records) else np.zeros(0, dtype=int)
    histogram = np.zeros((len(records), len(candidates)), dtype=np.float32)
    histogram[np.arange(len(records)), votes] = 1.0
    # One row per record, norm 1 = the clip norm: the mechanism's noisy sum is the
    # noisy histogram, normalised (which keeps the order).
    noisy, _ = _epsvec.release_vector(histogram, 1, 1.0, sigma, None if seed is None else seed + 17)
    top = np.argsort(-noisy[0], kind="stable")[:k]
    return [candidates[i] for i in top]


def _embed(model, texts, layer, batch_size) -> np.ndarray:
    """Unit-normalised mean residual state of each text at ``layer`` (first token skipped)."""
    states = mean_states_without_sink(model, texts, layer, batch_size, max_tokens=800)
    return states / np.maximum(np.linalg.norm(states, axis=1, keepdims=True), 1e-12)


def _groups(texts, labels, classes) -> dict:
    if labels is None:
        if classes is not None:
            raise InvalidInputError("classes needs labels")
        return {None: texts}
    if len(labels) != len(texts):
        raise InvalidInputError(f"labels has {len(labels)} entries for {len(texts)} texts")
    order = list(classes) if classes is not None else sorted(set(labels), key=str)
    groups = {label: [] for label in order}
    for text, label in zip(texts, labels):
        if label not in groups:
            raise InvalidInputError(f"label {label!r} is not in classes {order}")
        groups[label].append(text)
    return groups


def _check_count(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
