"""Curator-only diagnostics: exact facts about the private records, for the
data holder's eyes only.

Everything epsvec publishes (vector files, the privacy report, return
values, the default console and warnings) is the same for two datasets
that differ in one record, up to the DP noise. The data holder still needs
a few exact facts to use the tool well: how many records each class had,
how many were cut to ``max_example_tokens``, how many terms the clip norm
bound, whether any gave non-finite activations, and whether the class is
too small for the noise. Those facts go here and nowhere else. They are
collected only inside :func:`curator_diagnostics` (the CLI's
``--show-private-diagnostics``), never saved with a release, never put in a
warning or a log, and printed under a heading that says not to publish them.

Under Poisson sampling (``sample_rate < 1``) only the facts computed
before the coins are drawn are given (records, truncated): clipped and
non-finite counts exist only for the drawn records and would reveal the
secret sample.

Example:
    >>> with epsvec.curator_diagnostics() as diagnostics:
    ...     vector = epsvec.extract(texts, eps=4)
    >>> print(diagnostics)   # to the data holder only; never publish it
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import asdict, dataclass

__all__ = ["curator_diagnostics", "CuratorDiagnostics", "ClassDiagnostics", "HEADING"]

HEADING = ("CURATOR-ONLY DIAGNOSTICS: exact counts from the private records, without noise. "
           "Do not publish, paste or commit them.")

_collector: contextvars.ContextVar[CuratorDiagnostics | None] = contextvars.ContextVar("epsvec_curator",
                                                                                       default=None)


@dataclass(frozen=True)
class ClassDiagnostics:
    """One class's release, as only the data holder may see it.

    Attributes:
        label: The class (None: unlabelled).
        records: Records of the class read by the release.
        truncated: Records cut to ``max_example_tokens``.
        max_example_tokens: The public length they were cut to.
        clipped: Records whose term the clip norm bound (None under Poisson sampling).
        nonfinite: Whether some record's term was non-finite and counted as
            zero (None under Poisson sampling).
        noise_norm: The noise's expected norm in units of C (public:
            ``sigma * sqrt(dim)``); a class needs about this many records
            for its vector to carry more signal than noise.
        delta: The release's delta; it should be well below ``1 / records``.
    """

    label: str | None
    records: int
    truncated: int
    max_example_tokens: int
    clipped: int | None
    nonfinite: bool | None
    noise_norm: float
    delta: float

    @property
    def notes(self) -> list[str]:
        """What the data holder should act on."""
        notes = []
        if self.records and self.delta > 1 / self.records:
            notes.append(f"delta = {self.delta:g} exceeds 1/records = {1 / self.records:g}: the guarantee is weak")
        if self.records < self.noise_norm:
            # The sum of n clipped terms has norm at most n*C.
            notes.append(f"{self.records} records against noise of norm ~{self.noise_norm:.0f} C: the vector will "
                         "be mostly noise (use more records, a larger eps, or fewer layers)")
        if self.nonfinite:
            notes.append("some records gave non-finite activations and counted as zero; try dtype='float32'")
        return notes

    def __str__(self) -> str:
        clipped = "clipped: not shown under Poisson sampling" if self.clipped is None else f"{self.clipped} clipped"
        nonfinite = "" if self.nonfinite is None else f", non-finite terms: {'yes' if self.nonfinite else 'no'}"
        line = (f"class {self.label!r}: {self.records} records, {self.truncated} cut to {self.max_example_tokens} "
                f"tokens, {clipped}{nonfinite}")
        return "\n".join([line] + [f"  note: {n}" for n in self.notes])


class CuratorDiagnostics:
    """What the private steps run inside :func:`curator_diagnostics` found, class by class."""

    def __init__(self) -> None:
        self.classes: list[ClassDiagnostics] = []

    def to_dict(self) -> dict:
        return {"curator_only": HEADING, "classes": [{**asdict(c), "notes": c.notes} for c in self.classes]}

    def __str__(self) -> str:
        body = [str(c) for c in self.classes] or ["(no private release ran)"]
        return "\n".join([f"==== {HEADING} ===="] + body + ["==== end of curator-only diagnostics ===="])

    def __repr__(self) -> str:  # an echo in a notebook cell must not print the counts by accident
        return f"<CuratorDiagnostics: {len(self.classes)} class(es); print() it to see the curator-only counts>"


@contextlib.contextmanager
def curator_diagnostics():
    """Collect the curator-only diagnostics of every release made inside the block.

    Yields:
        A :class:`CuratorDiagnostics`, filled as each class's release finishes.
    """
    diagnostics = CuratorDiagnostics()
    token = _collector.set(diagnostics)
    try:
        yield diagnostics
    finally:
        _collector.reset(token)


def record(entry: ClassDiagnostics) -> None:
    """Hand one class's diagnostics to the active collector; without one they are dropped."""
    diagnostics = _collector.get()
    if diagnostics is not None:
        diagnostics.classes.append(entry)
