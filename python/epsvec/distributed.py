"""Extraction and generation on a Ray cluster (``pip install epsvec[ray]``).

**Extraction.** The driver does the public work (the negatives, their mean
state, the clip norm) and holds each class's one ``PrivateRelease``. Ray
Data actors, each holding one loaded model, turn batches of records into
per-class partial sums (``ClippedSum``: each record run alone, clipped,
quantised to the release's fixed-point grid and summed as integers), and
those partial sums are all that comes back. The driver merges them: integer
addition, so any split, order or retry gives the same sum, bit for bit. It
adds the noise once, from its own secret source. A record's term is the one
the in-process path computes (the same engine call on the same public
prompt pieces), so with a test ``noise_seed`` the vectors equal the
in-process run's whenever the actors compute as the driver does: the same
model file, device and dtype, and the same number of libtorch threads
(the default), since on CPU the thread count changes how float sums round
and which linear kernel is measured fastest. The partial sums are
un-noised private data, like the records: epsvec sends them only between
the curator's own processes and writes them nowhere (Ray's object store
may spill them to the nodes' disks: the cluster must be trusted).

Every record is checked (a non-empty string with a declared label) in a
first pass over the dataset, by plain Ray tasks, before the driver loads
anything or reads any record into a release: a bad record is refused to
the curator before the release starts, never halfway through it. Ray's own
progress bars count rows, so they stay off while records are read; the
driver shows the elapsed time only.

**Lengths.** For ``synthesize``'s length histogram, a first pass of
actors (:func:`length_bins`) tokenizes each record as the prompt writes it
and returns only each class's count per length bin; the driver adds them
and releases the noisy histogram as the in-process path does.

Poisson sampling is not offered here: its coins are drawn inside the
in-process release from the same secret stream as the noise. Workers read
every record, so ``sample_rate`` must be None. A batch Ray drops on error
(``max_errored_blocks`` > 0) would remove many records at once, so that
is refused.

**Generation.** Samples ``(class, index)`` are cut into shards aligned to
the batch size. Each shard is one Ray Data task that runs the in-process
``generate_for_class`` on its indices. Sample ``j`` of a class depends only
on the seed and ``j``, so the texts equal the in-process run's.
:func:`generate_to_dir` writes each shard to its own JSONL file
(atomically: a temporary name, then a rename), so a rerun skips the shards
already written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import uuid
import warnings
from typing import Any

import numpy as np

from . import _epsvec, prompts
from .data import check_classes_type, check_text, declared_classes
from .errors import EpsvecError, InvalidInputError
from .lengths import bin_edges, record_bins
from .model import Model, load_model

__all__ = ["RayConfig", "is_ray_dataset", "generate", "generate_to_dir"]


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """How the work is spread over a Ray cluster (``ray.init`` is the caller's).

    Args:
        workers: Actors, each holding one loaded model.
        num_cpus: CPUs per actor, as Ray schedules them.
        num_gpus: GPUs per actor; with a GPU, the actor's model is on CUDA.
        batch_size: Records per task when extracting. When generating, each
            task's shard holds this many batches of samples.
        dtype: The actors' dtype; ``None``: the driver model's dtype
            if the actors run on the same kind of device, else the device's default.
        threads: libtorch threads per actor; ``None``: as many as this
            process uses, so the actors compute bit for bit as an in-process
            run would. On a cluster, set it to ``num_cpus`` for speed.
    """

    workers: int = 2
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 64
    dtype: str | None = None
    threads: int | None = None

    def __post_init__(self):
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise InvalidInputError(f"RayConfig.workers must be a positive integer, got {self.workers!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InvalidInputError(f"RayConfig.batch_size must be a positive integer, got {self.batch_size!r}")
        if not (self.num_cpus > 0 and self.num_gpus >= 0):
            raise InvalidInputError("RayConfig needs num_cpus > 0 and num_gpus >= 0")

    def model_spec(self, model: Model) -> dict:
        """How the actors load their model: ``load_model``'s arguments and the thread count."""
        import torch

        device = "cuda" if self.num_gpus > 0 else "cpu"
        same_kind = model.config.device.split(":")[0] == device
        # "auto" where the driver computes from GGUF blocks: "float32" would dequantise the file.
        as_driver = "auto" if model.config.weights == "gguf blocks" else model.config.dtype
        return dict(path=model.path, device=device, dtype=self.dtype or (as_driver if same_kind else "auto"),
                    threads=self.threads or torch.get_num_threads())

    def map_options(self) -> dict:
        import ray.data

        return dict(compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=self.num_cpus,
                    num_gpus=self.num_gpus, batch_format="numpy")


def is_ray_dataset(obj: Any) -> bool:
    return type(obj).__module__.startswith("ray.data") and hasattr(obj, "map_batches")


def declared_ray_classes(ds, labels, classes, text_column: str, label_column: str | None) -> list | None:
    """The public class list of a Ray dataset of records (None: unlabelled), from its schema and ``classes``."""
    if labels is not None:
        raise InvalidInputError("with a Ray dataset, labels come from its label_column, not labels=")
    check_classes_type(classes)
    with _progress_bars(ds, False):  # a file-backed dataset may read its first block here
        schema = ds.schema()
    if schema is None:
        raise InvalidInputError("the Ray dataset is empty; pass at least one record")
    columns = list(schema.names)
    if text_column not in columns:
        raise InvalidInputError(f"the Ray dataset has no text column {text_column!r}; its columns are {columns}")
    if label_column is None or label_column not in columns:
        if classes is not None:
            raise InvalidInputError(f"classes needs a label column; the Ray dataset's columns are {columns}")
        return None
    classes = declared_classes(classes)
    if None in classes:  # Arrow reads a missing label as None: it cannot name a class
        raise InvalidInputError("classes cannot include None with a Ray dataset")
    return classes


def check_records(ds, classes: list | None, text_column: str, label_column: str | None) -> None:
    """Every record of a Ray dataset checked by plain Ray tasks (no model),
    before any model work: a non-empty string, with a label in ``classes``
    (None: unlabelled). The first bad record is raised here, to the curator."""
    columns = [text_column] if classes is None else [text_column, label_column]
    checked = ds.select_columns(columns).map_batches(
        _check_batch, batch_format="numpy",
        fn_kwargs=dict(text_column=text_column, label_column=None if classes is None else label_column,
                       classes=classes))
    if not sum(int(row["records"]) for row in _rows(checked, progress=False)):
        raise InvalidInputError("the Ray dataset has no records; pass at least one")


def _check_batch(batch: dict, text_column: str, label_column: str | None, classes: list | None) -> dict:
    texts = batch[text_column]
    labels = batch[label_column] if label_column else [None] * len(texts)
    index = {label: i for i, label in enumerate(classes or [None])}
    try:
        for text, label in zip(texts, labels):
            checked_record(text, label, index, text_column)
    except (EpsvecError, TypeError) as error:
        return {"records": np.array([0]), "error": np.array([pickle.dumps(error)], dtype=object)}
    return {"records": np.array([len(texts)]), "error": np.array([b""], dtype=object)}


def checked_record(text, label, index: dict, text_column: str) -> tuple[str, int]:
    """``(text, class index)`` of one record from a Ray batch, or the error that refuses it."""
    text, label = _python(text), _python(label)
    check_text(text, f"a record's {text_column!r}")
    if label not in index:
        raise InvalidInputError(f"a record has the label {label!r}, which is not in classes {list(index)}")
    return text, index[label]


def records_by_class(batch: dict, index: dict, text_column: str, label_column: str | None) -> dict[int, list[str]]:
    """A Ray batch's records grouped by class index (each checked)."""
    texts = batch[text_column]
    labels = batch[label_column] if label_column else [None] * len(texts)
    groups: dict[int, list[str]] = {}
    for text, label in zip(texts, labels):
        text, c = checked_record(text, label, index, text_column)
        groups.setdefault(c, []).append(text)
    return groups


# ------------------------------------------------------------------ plumbing


def _rows(ds, progress: bool):
    """The rows of a Ray dataset of worker results; a bad-input error a worker
    returned (see :func:`_reporting_errors`) is raised here as itself."""
    with _progress_bars(ds, progress):
        for row in ds.iter_rows():
            if row["error"]:
                raise pickle.loads(row["error"])
            yield row


@contextlib.contextmanager
def _progress_bars(ds, shown: bool):
    """Ray's progress bars for work on ``ds`` on or off. Over private records
    they stay off: they count rows and blocks. So does Ray's warning that an
    actor pool got fewer blocks than actors, which prints the block count."""
    context = ds.context  # the dataset's own copy, taken when it was created
    before, context.enable_progress_bars = context.enable_progress_bars, shown
    try:
        with warnings.catch_warnings():
            if not shown:
                warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
            yield
    finally:
        context.enable_progress_bars = before


def _ray_context():
    import ray.data

    return ray.data.DataContext.get_current()


def _reporting_errors(work):
    """Wraps a worker's ``__call__``: bad input (an epsvec or type error) comes
    back as a one-row result holding the pickled error, since Ray Data would
    wrap it in an exception that keeps only its text."""

    def call(self, batch: dict) -> dict:
        try:
            out = work(self, batch)
            return {**out, "error": np.array([b""] * len(out["class"]), dtype=object)}
        except (EpsvecError, TypeError) as error:
            return {"class": np.array([-1]), **{k: np.array([v], dtype=object) for k, v in self.empty_row.items()},
                    "error": np.array([pickle.dumps(error)], dtype=object)}

    return call


# ------------------------------------------------------------------ extraction


def extract_classes(ds, model: Model, releases: dict, config: RayConfig, text_column: str,
                    label_column: str | None, progress: bool) -> dict:
    """Reads the records of ``ds`` (checked already: :func:`check_records`)
    on Ray into each class's release (``{label: ClassRelease}``, prepared by
    the driver; ``label_column`` None: one class) and returns
    ``{label: [DatasetVector per budget]}``."""
    from .extract import reading_records

    if ds.context.max_errored_blocks != 0 or _ray_context().max_errored_blocks != 0:
        # Ray would drop a failed batch of records silently: one record could remove many.
        raise InvalidInputError("DataContext.max_errored_blocks must be 0 for a private release")
    classes = list(releases.values())
    sums = ds.map_batches(
        _RecordWorker, batch_size=config.batch_size, **config.map_options(),
        fn_constructor_kwargs=dict(model_spec=config.model_spec(model), classes=classes, text_column=text_column,
                                   label_column=label_column),
    )
    n_layers, hidden = len(classes[0].layers), model.config.hidden_size
    with reading_records(None, progress):
        for row in _rows(sums, progress=False):  # Ray's bars count rows: off
            part = _epsvec.ClippedSum.from_bytes(row["partial_sum"], n_layers, hidden)
            c = int(row["class"])
            classes[c].release.merge(part)
            classes[c].truncated += int(row["truncated"])
        return {label: release.finish(model) for label, release in releases.items()}


class _RecordWorker:
    """A Ray actor: one loaded model; a batch of records in, one partial sum
    per class present in the batch out (and how many records were cut)."""

    empty_row = {"partial_sum": b"", "truncated": 0}

    def __init__(self, model_spec, classes, text_column, label_column):
        self.model = _load(model_spec)
        self.classes = classes
        self.index = {c.plan.label: i for i, c in enumerate(classes)}
        self.text_column, self.label_column = text_column, label_column

    @_reporting_errors
    def __call__(self, batch: dict) -> dict:
        groups = records_by_class(batch, self.index, self.text_column, self.label_column)
        out = {"class": [], "partial_sum": [], "truncated": []}
        for c, records in sorted(groups.items()):
            release = self.classes[c]
            plan = release.plan
            _, pieces, truncated = prompts.with_examples(self.model, plan.prefix_text, records, plan.label_text,
                                                         plan.max_example_tokens, plan.format)
            part = _epsvec.ClippedSum(len(release.layers), self.model.config.hidden_size, release.clip)
            part.add_prompts(self.model._engine, *release.term_arguments(pieces))
            out["class"].append(c)
            out["partial_sum"].append(part.to_bytes())
            out["truncated"].append(truncated)
        return {"class": np.array(out["class"], dtype=np.int64),
                "partial_sum": np.array(out["partial_sum"], dtype=object),
                "truncated": np.array(out["truncated"], dtype=np.int64)}


def _load(spec: dict) -> Model:
    """An actor's model; the thread count is set first, because the linear
    kernels are chosen (and cached) per thread count when the model loads."""
    import torch

    torch.set_num_threads(spec["threads"])
    return load_model(spec["path"], device=spec["device"], dtype=spec["dtype"])


def _python(value):
    """A numpy scalar from a Ray batch as the Python value users declared classes with."""
    return value.item() if isinstance(value, np.generic) else value


def length_bins(ds, model: Model, fmt, max_new_tokens: int, classes: list, config: RayConfig, text_column: str,
                label_column: str | None) -> dict:
    """Each class's records' length bins (``lengths.record_bins``), counted
    by Ray actors: ``{class: [bin per record]}`` (checked already:
    :func:`check_records`; ``label_column`` None: one class). Only counts per
    bin come back; the driver noises them once (``lengths.release_lengths``)."""
    counts = ds.map_batches(
        _LengthWorker, batch_size=config.batch_size, **config.map_options(),
        fn_constructor_kwargs=dict(model_spec=config.model_spec(model), fmt=fmt, max_new_tokens=max_new_tokens,
                                   classes=classes, text_column=text_column, label_column=label_column))
    total = np.zeros((len(classes), len(bin_edges(max_new_tokens)) - 1), dtype=np.int64)
    for row in _rows(counts, progress=False):  # Ray's bars count rows: off
        total[int(row["class"])] += json.loads(row["counts"])
    # Records in any order: with every record counted (no Poisson coins on Ray) only the counts matter.
    return {label: np.repeat(np.arange(total.shape[1]), per_bin).tolist() for label, per_bin in zip(classes, total)}


class _LengthWorker:
    """A Ray actor: one loaded model (for its tokenizer); a batch of records
    in, each class's count per length bin out."""

    empty_row = {"counts": "[]"}

    def __init__(self, model_spec, fmt, max_new_tokens, classes, text_column, label_column):
        self.model = _load(model_spec)
        self.fmt, self.max_new_tokens = fmt, max_new_tokens
        self.bins = len(bin_edges(max_new_tokens)) - 1
        self.index = {label: i for i, label in enumerate(classes)}
        self.text_column, self.label_column = text_column, label_column

    @_reporting_errors
    def __call__(self, batch: dict) -> dict:
        groups = records_by_class(batch, self.index, self.text_column, self.label_column)
        classes = sorted(groups)
        counts = [np.bincount(record_bins(self.model, self.fmt, groups[c], self.max_new_tokens),
                              minlength=self.bins).tolist() for c in classes]
        return {"class": np.array(classes, dtype=np.int64),
                "counts": np.array([json.dumps(c) for c in counts], dtype=object)}


# ------------------------------------------------------------------ generation


@dataclasses.dataclass(frozen=True)
class Shard:
    """Samples ``start .. stop - 1`` of class ``cls``."""

    cls: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"part-{self.cls:04d}-{self.start:09d}.jsonl"


def shards(n: int, num_classes: int, batch_size: int, batches_per_shard: int) -> list[Shard]:
    """Every class's ``n`` samples in shards of ``batch_size * batches_per_shard``
    (aligned to ``batch_size``, so each shard runs the batches the in-process run would)."""
    size = batch_size * batches_per_shard
    return [Shard(c, j, min(j + size, n)) for c in range(num_classes) for j in range(0, n, size)]


def generate(plans: list, n: int, model: Model, config: RayConfig, *, seeds: list[int], sampling: dict,
             batch_size: int, progress: bool = False) -> list[str]:
    """``n`` samples of every plan, on Ray, in the in-process order (plan by plan)."""
    todo = shards(n, len(plans), batch_size, config.batch_size)
    rows = _rows(_generation(todo, plans, model, config, seeds, sampling, batch_size, None), progress)
    texts = [[""] * n for _ in plans]
    for row in rows:
        for i, text in zip(json.loads(row["indices"]), json.loads(row["texts"])):
            texts[int(row["class"])][i] = text
    return [t for per_class in texts for t in per_class]


def generate_to_dir(plans: list, n: int, model: Model, config: RayConfig, out_dir: str, *, seeds: list[int],
                    sampling: dict, batch_size: int, progress: bool = False) -> int:
    """Writes the samples as JSONL shards under ``out_dir`` (``{"text", "label",
    "index"}`` per line), skipping shards already there; returns how many
    shards this call wrote."""
    os.makedirs(out_dir, exist_ok=True)
    every = shards(n, len(plans), batch_size, config.batch_size)
    todo = [s for s in every if not os.path.exists(os.path.join(out_dir, s.name))]
    if todo:
        for _ in _rows(_generation(todo, plans, model, config, seeds, sampling, batch_size, out_dir), progress):
            pass
    missing = [s.name for s in every if not os.path.exists(os.path.join(out_dir, s.name))]
    if missing:
        raise OSError(f"{len(missing)} shard(s) written by the actors are not in {out_dir} (e.g. {missing[0]}): "
                      "on a cluster, the output must be on storage every node shares")
    return len(todo)


def _generation(todo: list[Shard], plans, model, config, seeds, sampling, batch_size, out_dir):
    import ray.data

    items = [{"class": s.cls, "start": s.start, "stop": s.stop} for s in todo]
    config = dataclasses.replace(config, workers=min(config.workers, len(todo)))  # no idle actors
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _SampleWorker, batch_size=1, **config.map_options(),
        fn_constructor_kwargs=dict(model_spec=config.model_spec(model), plans=plans, seeds=seeds, sampling=sampling,
                                   batch_size=batch_size, out_dir=out_dir),
    )


class _SampleWorker:
    """A Ray actor: one loaded model; a shard in, its samples out (or into its file)."""

    empty_row = {"indices": "[]", "texts": "[]"}

    def __init__(self, model_spec, plans, seeds, sampling, batch_size, out_dir):
        from .synthesis import generate_for_class

        self.generate_for_class = generate_for_class
        self.model = _load(model_spec)
        for plan in plans:
            if plan.vector is not None:
                plan.vector.check_model(self.model)
        self.plans, self.seeds, self.sampling = plans, seeds, sampling
        self.batch_size, self.out_dir = batch_size, out_dir

    @_reporting_errors
    def __call__(self, batch: dict) -> dict:
        out = {"class": [], "indices": [], "texts": []}
        for c, start, stop in zip(batch["class"], batch["start"], batch["stop"]):
            shard = Shard(int(c), int(start), int(stop))
            plan = self.plans[shard.cls]
            indices = range(shard.start, shard.stop)
            texts = self.generate_for_class(self.model, plan, indices, seed=self.seeds[shard.cls],
                                            batch_size=self.batch_size, **self.sampling)
            if self.out_dir is not None:
                _write_shard(os.path.join(self.out_dir, shard.name), plan.label, indices, texts)
                texts = []
            out["class"].append(shard.cls)
            out["indices"].append(json.dumps(list(indices)))
            out["texts"].append(json.dumps(texts, ensure_ascii=False))
        return {k: np.array(v, dtype=np.int64 if k == "class" else object) for k, v in out.items()}


def _write_shard(path: str, label, indices, texts) -> None:
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for i, text in zip(indices, texts):
            f.write(json.dumps({"text": text, "label": label, "index": i}, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
