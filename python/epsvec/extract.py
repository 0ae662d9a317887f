"""`epsvec.extract`: the one step that reads private data (METHOD.md §3-4).

Each private record's term is the pooled residual state, at the released
layers, of the fixed-shot prompt with the record as its data shot, minus
the mean pooled state of the same prompt with public negatives (the
model's own samples) in its place. The term depends on that record and on
public data only: not on the other records, their order or their batch
(each record's prompt runs alone after the public prefix). The terms are
clipped jointly in L2 to ``clip_norm``, summed exactly, and Gaussian noise
calibrated to (eps, delta) by the exact accountant is added; each layer is
then normalised to a unit vector. Under add/remove adjacency one record
moves the sum by at most C (2C under substitution).

Nothing chosen from private data leaves un-noised: layers, clip norm and
pooling come from the model's depth and public text; the class set is
declared by the caller (``classes``); the Poisson sample is drawn, and the
sampled records read, inside the Rust release (`epsvec._epsvec.PrivateRelease`),
whose sample and size never come out; counts (records, truncated, clipped,
non-finite) go only to the curator-only channel (`epsvec.diagnostics`),
never into a file, a return value, a warning or a progress line.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _epsvec, diagnostics, distributed, prompts
from .data import check_text, declared_classes, records_from
from .errors import InvalidInputError, PrivacyError, ReleaseAbortedError
from .model import REPEATED_PROMPT_ROWS, Model, load_model
from .progress import elapsed_only, titled
from .privacy import gaussian_sigma
from .report import PrivacyStep
from .seeds import derive_seed
from .vector import DatasetVector

__all__ = ["extract"]

POOLS = ("mean", "example", "last")
RECORDS_PER_CALL = 64  # records handed to the release per call (Ctrl-C is seen between calls)


def extract(
    texts: Sequence[str],
    eps: float,
    *,
    delta: float = 1e-5,
    model: Model | str | None = None,
    labels: Sequence[Any] | None = None,
    classes: Sequence[Any] | None = None,
    negatives: Sequence[str] | None = None,
    domain: str | None = None,
    fixed_shots: Sequence[str] | Mapping[Any, Sequence[str]] | None = None,
    prompt_format: str = "auto",
    single_line: bool = True,
    layers: str | Sequence[int] = "auto",
    clip_norm: str | float = "auto",
    pool: str = "mean",
    sample_rate: float | None = None,
    adjacency: str = "add_remove",
    batch_size: int = 16,
    progress: bool = True,
    seed: int | None = None,
    noise_seed: int | None = None,
    max_example_tokens: int = 800,
    negative_temperature: float = 1.0,
    negative_max_new_tokens: int = 96,
    num_negatives: int = 64,
    text_column: str = "text",
    label_column: str | None = "label",
    ray: Any = None,
) -> DatasetVector | dict[Any, DatasetVector]:
    """Extract an (eps, delta)-DP dataset vector from private texts.

    Args:
        texts: The private records: a list of strings, a ``datasets.Dataset``
            or a ``ray.data.Dataset`` (``text_column``, labels from ``label_column``;
            a Ray dataset is read by Ray actors, see ``ray``).
        eps: Privacy budget of this release (finite, > 0).
        delta: (0, 1); should be well below 1/len(texts).
        model: A loaded model or a path; the embedded default if None.
        labels: One label per text: one vector per class (classes are
            disjoint, so the budget holds per record: parallel composition).
        classes: The public set of classes, required with ``labels`` (a
            ``datasets.ClassLabel`` column declares its own names). Every
            declared class gets a vector, even one without records (pure
            noise); a record labelled outside it is an error, before any work.
        negatives: Public texts whose mean pooled state is subtracted from
            each record's; by default ``num_negatives`` of the model's own
            samples from the fixed-shot prompt.
        domain: What the texts are, for the prompt ("movie reviews").
        fixed_shots: Public example texts placed in every prompt, or
            ``{label: texts}`` for per-class shots.
        prompt_format: ``"raw"`` text (base models), ``"chat"`` (the shots as
            a user message through the chat template), or ``"auto"``: the
            model's :attr:`~epsvec.Model.prompt_format`.
        single_line: Write every example on one line (line breaks become
            spaces) and stop each generated one at a newline (default).
            False keeps line breaks, for multi-paragraph texts.
        layers: Blocks to release, or "auto": the model's
            :attr:`~epsvec.Model.recipe` (by depth for a model without one).
        clip_norm: L2 bound C on each record's term, or "auto" (the median
            distance of a public negative's state from the others' mean).
        pool: "mean" (every prompt token but the first, an attention sink
            whose huge state would dominate), "example" (the data shot's
            own tokens) or "last".
        sample_rate: Poisson-sample each record with this public rate,
            drawn inside the release (privacy amplification). None: every record.
        adjacency: "add_remove" or "substitution" (sensitivity 2C).
        batch_size: Prompts per forward pass for public text (private records run one at a time).
        progress: Show progress bars.
        seed: Makes the public randomness (negatives) reproducible; the noise stays secret.
        noise_seed: For tests only: makes the privacy noise and sample
            reproducible, which voids the guarantee (the vector says ``seeded``).
        max_example_tokens: Private examples are cut to this many tokens,
            at a sentence end (how many: :mod:`epsvec.diagnostics` only).
        negative_temperature: Sampling temperature of the default negatives.
        negative_max_new_tokens: Length cap of the default negatives.
        num_negatives: How many default negatives to generate per class (a
            constant, so the work done does not depend on private counts).
        text_column, label_column: Columns of a ``datasets.Dataset`` or ``ray.data.Dataset``.
        ray: An :class:`epsvec.distributed.RayConfig` (actors, CPUs and GPUs
            each, records per task) for a ``ray.data.Dataset``; the default
            config when None. The model must be a path every actor can load.

    Returns:
        A :class:`DatasetVector`, or ``{label: DatasetVector}`` with labels.

    Raises:
        TypeError: texts are not strings.
        InvalidInputError: empty input, labels without classes or outside
            them, bad options.
        PrivacyError: impossible eps, delta or sample rate.
        ReleaseAbortedError: the engine failed while reading the records;
            nothing was released.

    Counts about the private records (class sizes, truncated, clipped)
    are never printed or returned: collect them, for the data holder
    only, with :func:`epsvec.curator_diagnostics`.
    """
    on_ray = distributed.is_ray_dataset(texts)
    groups, labelled = class_groups(texts, labels, classes, text_column, label_column)
    check_privacy(eps, delta, adjacency)
    rate = check_sample_rate(sample_rate)
    if on_ray and rate < 1:
        raise PrivacyError("sample_rate is not offered on Ray: the Poisson coins are drawn inside the in-process "
                           "release; read every record (sample_rate=None)")
    check_options(pool=pool, max_example_tokens=max_example_tokens, num_negatives=num_negatives, clip_norm=clip_norm,
                  seed=seed, noise_seed=noise_seed)
    shots_of = shots_by_label(fixed_shots)
    public = check_texts(negatives, "negatives") if negatives is not None else None
    prompts.check_format(prompt_format)
    if not isinstance(model, Model):
        model = load_model(model)
    layer_list = resolve_layers(layers, model)
    fmt = prompts.resolve_format(model, prompt_format, single_line)
    plans = {label: ClassPrompts.build(model, label, domain, shots_of(label), records, max_example_tokens, fmt)
             for label, records in groups.items()}
    options = dict(eps=[eps], delta=delta, negatives=public, layers=layer_list, clip_norm=clip_norm, pool=pool,
                   sample_rate=rate, adjacency=adjacency, batch_size=batch_size, progress=progress, seed=seed,
                   noise_seed=noise_seed, temperature=negative_temperature, max_new_tokens=negative_max_new_tokens,
                   num_negatives=num_negatives)
    vectors = extract_classes(model, plans, texts if on_ray else None, ray, text_column,
                              label_column if labelled else None, **options)
    return {label: v[0] for label, v in vectors.items()} if labelled else vectors[None][0]


@dataclass
class ClassPrompts:
    """One class's private prompts, tokenized before any model work. Each
    example is cut to a public length that fits the context (the requested
    ``max_example_tokens``, lowered if the prompt around it leaves less room),
    so every private prompt fits and its cost is bounded by public parameters."""

    label: Any
    label_text: str | None
    domain: str | None
    shots: list[str]
    prefix_text: str
    format: prompts.PromptFormat
    head: list[int]
    pieces: list[prompts.PromptIds]
    max_example_tokens: int
    truncated: int  # records cut to max_example_tokens: curator-only

    @classmethod
    def build(cls, model: Model, label, domain, shots: list[str], records: list[str], max_example_tokens: int,
              fmt: prompts.PromptFormat):
        label_text = None if label is None else str(label)
        prefix_text = prompts.prefix(domain, label_text, shots, fmt)
        head, tail = prompts.frame(model, prefix_text, label_text, fmt)
        room = model.config.context_length - len(head) - len(tail)
        if room < 1:
            raise InvalidInputError(f"the prompt of class {label_text!r} alone fills the model's context of "
                                    f"{model.config.context_length} tokens; use fewer/shorter fixed_shots")
        if room < max_example_tokens:  # public: the prompt and the context only
            warnings.warn(f"class {label_text!r}: examples are cut to {room} tokens (not max_example_tokens = "
                          f"{max_example_tokens}) to fit the model's context", stacklevel=4)
            max_example_tokens = room
        head, pieces, truncated = prompts.with_examples(model, prefix_text, records, label_text, max_example_tokens,
                                                        fmt)
        return cls(label, label_text, domain, shots, prefix_text, fmt, head, pieces, max_example_tokens, truncated)


def extract_classes(model: Model, plans: dict, ray_records, ray, text_column: str, label_column: str | None,
                    **options) -> dict:
    """``{label: [DatasetVector per budget]}`` for ``{label: ClassPrompts}``:
    each plan's records read in this process, or, given a Ray dataset of
    them (``ray_records``), by Ray actors in one pass over every class."""
    if ray_records is None:
        return {label: extract_class(model, plan, **options) for label, plan in plans.items()}
    releases = {label: ClassRelease.prepare(model, plan, **options) for label, plan in plans.items()}
    return distributed.extract_classes(ray_records, model, releases, ray or distributed.RayConfig(), text_column,
                                       label_column, options["progress"])


def extract_class(model: Model, plan: ClassPrompts, *, eps, delta, negatives, layers, clip_norm, pool, sample_rate,
                  adjacency, batch_size, progress, seed, noise_seed, temperature, max_new_tokens,
                  num_negatives) -> list[DatasetVector]:
    """One class's vectors, one per budget in ``eps`` (a list): the records
    are read once, and each budget gets its own independent noise draw."""
    release = ClassRelease.prepare(
        model, plan, eps=eps, delta=delta, negatives=negatives, layers=layers, clip_norm=clip_norm, pool=pool,
        sample_rate=sample_rate, adjacency=adjacency, batch_size=batch_size, progress=progress, seed=seed,
        noise_seed=noise_seed, temperature=temperature, max_new_tokens=max_new_tokens, num_negatives=num_negatives)
    with reading_records(plan.label_text, progress):
        release.offer_records(model, plan.pieces)
        return release.finish(model)


@contextlib.contextmanager
def reading_records(label: str | None, progress: bool):
    """The part of a release that reads private records. It shows only the
    elapsed time, and an engine failure in it (out of memory, a device
    error), which may happen only when a given record is read, aborts the
    release: nothing is returned or written, and the error, which goes to
    the curator, says so."""
    try:
        with elapsed_only(titled("reading the private records", label), progress):
            yield
    except Exception as error:  # whatever it is, the release must not go on
        raise ReleaseAbortedError(f"the private release{'' if label is None else f' of class {label!r}'} was "
                                  f"aborted while reading the records, and nothing was released: {error}") from error


@dataclass
class ClassRelease:
    """One class's release in progress: its public side (the negatives' mean
    state, the clip norm, the noise scales) and the Rust release the
    records' terms go into, in this process or as workers' partial sums."""

    plan: ClassPrompts
    eps: list[float]
    delta: float
    adjacency: str
    layers: list[int]
    pool: str
    clip: float
    clip_rule: str
    baseline: np.ndarray  # [layers * hidden] float32: the public negatives' mean pooled state
    residual_norms: dict[int, float]
    sigmas: list[float]
    release: Any  # _epsvec.PrivateRelease
    truncated: int  # records cut to the plan's max_example_tokens (curator-only), here or on Ray workers

    def __getstate__(self):  # Ray workers get the public side; the release stays with the driver
        return {**self.__dict__, "release": None}

    @classmethod
    def prepare(cls, model: Model, plan: ClassPrompts, *, eps, delta, negatives, layers, clip_norm, pool, sample_rate,
                adjacency, batch_size, progress, seed, noise_seed, temperature, max_new_tokens,
                num_negatives) -> "ClassRelease":
        """Everything public, before any record is read."""
        label = plan.label_text
        if negatives is None:
            negatives = model_negatives(model, plan.format.prompt(plan.prefix_text, label), plan.format,
                                        num_negatives, temperature, max_new_tokens, batch_size,
                                        progress and titled("public negatives", label),
                                        derive_seed(seed, "negatives", label))
        _, negative_prompts, _ = prompts.with_examples(model, plan.prefix_text, negatives, label,
                                                     plan.max_example_tokens, plan.format)
        negative_states = pooled_states(model, negative_prompts, layers, pool, batch_size)
        clip = _clip_norm(clip_norm, negative_states)
        sigmas = [gaussian_sigma(e, delta, sample_rate=sample_rate, adjacency=adjacency) for e in eps]
        release = _epsvec.PrivateRelease(len(layers), model.config.hidden_size, clip, sample_rate,
                                         derive_seed(noise_seed, "vector noise", label))
        clip_rule = ("median distance of a public negative's state from the mean of the others"
                     if clip_norm == "auto" else "given")
        prepared = cls(plan, list(eps), delta, adjacency, list(layers), pool, clip, clip_rule,
                       np.ascontiguousarray(negative_states.mean(axis=0).reshape(-1), dtype=np.float32),
                       _residual_norms(model, negative_prompts[:16], layers, batch_size), sigmas, release,
                       plan.truncated)
        prepared.run_longest_prompt(model)
        return prepared

    def run_longest_prompt(self, model: Model) -> None:
        """Runs the longest prompt a record can make (the example at its full
        public length, of public filler tokens) the way records run, into a
        throwaway sum: an out-of-memory error that only the longest records
        would meet happens here, before any record is read, where it depends
        on no record (on this process's device; Ray actors run their own)."""
        head, tail = prompts.frame(model, self.plan.prefix_text, self.plan.label_text, self.plan.format)
        body = (tail or head)[:1] * self.plan.max_example_tokens
        longest = prompts.PromptIds(head + body + tail, slice(len(head), len(head) + len(body)))
        probe = _epsvec.ClippedSum(len(self.layers), model.config.hidden_size, self.clip)
        probe.add_prompts(model._engine, *self.term_arguments([longest]))

    def term_arguments(self, pieces: list[prompts.PromptIds]) -> tuple:
        """How the engine makes these records' terms: ``(prefix, tails, layers, pool, baseline, weights)``
        for ``PrivateRelease.offer_prompts`` and ``ClippedSum.add_prompts``."""
        head = self.plan.head
        tails = [p.ids[len(head):] for p in pieces]
        weights = None if self.pool == "last" else [_weights(p, self.pool) for p in pieces]
        return head, tails, self.layers, "last" if self.pool == "last" else "mean", self.baseline, weights

    def offer_records(self, model: Model, pieces: list[prompts.PromptIds]) -> None:
        """Reads the records in this process, inside the release (Poisson coins included)."""
        for start in range(0, len(pieces), RECORDS_PER_CALL):
            self.release.offer_prompts(model._engine, *self.term_arguments(pieces[start : start + RECORDS_PER_CALL]))

    def finish(self, model: Model) -> list[DatasetVector]:
        """One vector per budget, each with its own noise draw; ends the release.
        The curator-only counts go to :mod:`epsvec.diagnostics` (when collected)."""
        label, plan = self.plan.label_text, self.plan
        counts = self.release.curator_counts
        diagnostics.record(diagnostics.ClassDiagnostics(
            label, counts["records"], self.truncated, plan.max_example_tokens, counts["clipped"], counts["nonfinite"],
            max(self.sigmas) * math.sqrt(self.baseline.size), self.delta))
        vectors = []
        for e, (directions, info) in zip(self.eps, self.release.finish(self.sigmas)):
            step = PrivacyStep(
                "dataset vector", float(e), float(self.delta), info["sigma"], info["sample_rate"], self.adjacency,
                {str(label): self.clip}, info["mechanism"], info["accountant"], info["noise"], list(self.layers),
                self.pool, self.clip_rule, info["seeded"],
            )
            vectors.append(DatasetVector({layer: directions[i] for i, layer in enumerate(self.layers)}, label,
                                         model.fingerprint(), step.to_dict(), self.residual_norms,
                                         {"domain": plan.domain, "fixed_shots": list(plan.shots),
                                          "format": plan.format.to_dict()}))
        return vectors


def _clip_norm(clip_norm, negative_states: np.ndarray) -> float:
    """The given C, or "auto": the median distance of one public negative's
    state from the mean of the others (a record's term is a state minus that mean)."""
    if clip_norm != "auto":
        return float(clip_norm)
    m = len(negative_states)
    flat = negative_states.reshape(m, -1).astype(np.float64)
    others = (flat.sum(axis=0) - flat) / max(m - 1, 1)
    clip = float(np.median(np.linalg.norm(flat - others, axis=1))) if m > 1 else 0.0
    if not clip > 0:
        raise InvalidInputError("clip_norm='auto' needs several distinct public negatives; pass more, or a clip_norm")
    return clip


def _residual_norms(model: Model, pieces: list[prompts.PromptIds], layers: list[int], batch_size: int) -> dict[int, float]:
    """Mean L2 norm of a token's state per layer over public prompts (the first, sink token skipped)."""
    states = model._engine.token_states([p.ids for p in pieces], layers, batch_size)
    norms = np.concatenate([np.linalg.norm(s[1:], axis=-1) for s in states])  # [tokens, layers]
    return {layer: float(norms[:, i].mean()) for i, layer in enumerate(layers)}


def pooled_states(model: Model, pieces: list[prompts.PromptIds], layers: list[int], pool: str,
                  batch_size: int) -> np.ndarray:
    """Pooled states ``[len(pieces), n_layers, hidden]`` of public prompts (batched freely)."""
    context = model.config.context_length
    if any(len(p.ids) > context for p in pieces):
        raise InvalidInputError(f"a public negative's prompt exceeds the model's context of {context} tokens; "
                                "lower max_example_tokens or use fewer/shorter fixed_shots")
    ids = [p.ids for p in pieces]
    if pool == "last":
        return model._engine.pooled_states(ids, layers, "last", batch_size)
    return model._engine.pooled_states(ids, layers, "mean", batch_size, [_weights(p, pool) for p in pieces])


def _weights(piece: prompts.PromptIds, pool: str) -> list[float]:
    w = np.zeros(len(piece.ids), dtype=np.float32)
    if pool == "mean":
        w[1:] = 1.0  # skip the attention sink
    else:
        w[piece.example] = 1.0
    return w.tolist()


def model_negatives(model, prompt, fmt, count, temperature, max_new_tokens, batch_size, progress, seed):
    """The public prior: the unsteered model's own samples from the fixed-shot prompt."""
    texts = model.generate([prompt] * count, max_new_tokens=max_new_tokens, temperature=temperature,
                           stop=fmt.stop, seed=seed, batch_size=REPEATED_PROMPT_ROWS * batch_size,
                           progress=progress, add_special_tokens=fmt.add_special_tokens)
    return [t.strip() or "." for t in texts]


def class_groups(texts, labels, classes, text_column: str, label_column: str | None) -> tuple[dict, bool]:
    """``({class: records}, labelled)`` for any input: lists, a ``datasets.Dataset``
    or a Ray dataset (whose records stay where they are: empty lists here).
    Every record is checked here, before any model work."""
    if distributed.is_ray_dataset(texts):
        classes = distributed.declared_ray_classes(texts, labels, classes, text_column, label_column)
        distributed.check_records(texts, classes, text_column, label_column)
        return ({None: []}, False) if classes is None else ({label: [] for label in classes}, True)
    texts, labels, classes = records_from(texts, labels, text_column, label_column, classes)
    return group_by_class(check_texts(texts), labels, classes), labels is not None


def group_by_class(texts: list[str], labels: list | None, classes: list | None) -> dict:
    """``{class: records}`` in the order of the declared ``classes`` (every
    class present, even without records); refuses labels without classes
    and labels outside them, naming the first offending record."""
    if labels is None:
        if classes is not None:
            raise InvalidInputError("classes needs labels (one per text)")
        return {None: texts}
    if len(labels) != len(texts):
        raise InvalidInputError(f"labels has {len(labels)} entries for {len(texts)} texts")
    order = declared_classes(classes)
    groups = {label: [] for label in order}
    for i, (text, label) in enumerate(zip(texts, labels)):
        if label not in groups:
            raise InvalidInputError(f"record {i} has the label {label!r}, which is not in classes {order}")
        groups[label].append(text)
    return groups


def shots_by_label(fixed_shots, name: str = "fixed_shots"):
    """``label -> list of public texts`` from a list (same for every class) or a mapping."""
    if isinstance(fixed_shots, Mapping):
        table = {label: check_texts(shots, f"{name}[{label!r}]", allow_empty=True)
                 for label, shots in fixed_shots.items()}
        def lookup(label):
            if label not in table:
                raise InvalidInputError(f"{name} has no entry for the class {label!r}")
            return table[label]
        return lookup
    shots = check_texts(fixed_shots, name, allow_empty=True) if fixed_shots else []
    return lambda label: shots


def check_sample_rate(sample_rate) -> float:
    if sample_rate is None:
        return 1.0
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not 0 < sample_rate <= 1:
        raise PrivacyError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    return float(sample_rate)


def check_options(*, pool, max_example_tokens, num_negatives, clip_norm, seed, noise_seed) -> None:
    """Every extraction option, checked before any model work."""
    if pool not in POOLS:
        raise InvalidInputError(f"pool must be one of {POOLS}, got {pool!r}")
    for name, value in (("max_example_tokens", max_example_tokens), ("num_negatives", num_negatives)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    if num_negatives < 2:
        raise InvalidInputError(f"num_negatives must be at least 2 (the clip norm and the mean need several), got "
                                f"{num_negatives}")
    if clip_norm != "auto":
        if isinstance(clip_norm, bool) or not isinstance(clip_norm, (int, float)) or not (
                math.isfinite(clip_norm) and 0 < clip_norm):
            raise InvalidInputError(f"clip_norm must be a finite number > 0 or 'auto', got {clip_norm!r}")
    for name, value in (("seed", seed), ("noise_seed", noise_seed)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63):
            raise InvalidInputError(f"{name} must be an integer in [0, 2**63) or None, got {value!r}")


def resolve_layers(layers, model: Model) -> list[int]:
    """``layers``, checked; ``"auto"``: the model's recipe."""
    num_layers = model.config.num_layers
    if isinstance(layers, str):
        if layers != "auto":
            raise InvalidInputError(f"layers must be 'auto' or a list of block indices, got {layers!r}")
        return model.recipe.layers(num_layers)
    out = sorted({int(l) for l in layers})
    if not out or out[0] < 0 or out[-1] >= num_layers:
        raise InvalidInputError(f"layers must be block indices in [0, {num_layers - 1}], got {list(layers)!r}")
    return out


def check_privacy(eps, delta, adjacency) -> None:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not (math.isfinite(eps) and eps > 0):
        raise PrivacyError(f"eps must be a finite number > 0, got {eps!r}")
    if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not 0 < delta < 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
    if adjacency not in ("add_remove", "substitution"):
        raise PrivacyError(f"adjacency must be 'add_remove' or 'substitution', got {adjacency!r}")


def check_texts(texts, name: str = "texts", allow_empty: bool = False) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    if not texts and not allow_empty:
        raise InvalidInputError(f"{name} is empty; pass at least one string")
    for i, t in enumerate(texts):
        check_text(t, f"{name}[{i}]")
    return texts
