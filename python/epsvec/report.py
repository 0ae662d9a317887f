"""The privacy report: what every private step spent, how the steps
compose, and what was treated as public. Typed, versioned, and the same
object for ``synthesize``, the CLI and ``epsvec info``.

Every value in a report is a public parameter (budgets, noise multipliers,
clip norms chosen from public data, the declared classes, rates) or a
function of them; no count or statistic of the private records appears.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import CorruptFileError

__all__ = ["PrivacyStep", "PrivacyReport", "compose_sequential", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
COMPOSITION = ("basic sequential composition over the private steps (eps and delta add); classes are disjoint "
               "and declared in advance, so each record enters one class's steps only (parallel composition); "
               "generation is post-processing")


@dataclass(frozen=True)
class PrivacyStep:
    """One private step: a Gaussian release of a sum of per-record terms.

    Attributes:
        name: ``"dataset vector"``, ``"fixed-shot selection"`` or ``"length histogram"``.
        eps, delta: What the step spends.
        sigma: Noise multiplier (noise std / clip norm), from the exact accountant.
        sample_rate: Poisson rate (1: every record).
        adjacency: ``"add_remove"`` (sensitivity C) or ``"substitution"`` (2C).
        clip_norm: The clip norm C per class (public: chosen from the
            model's own text or given).
        mechanism, accountant, noise: How the release is made.
        layers, pool: What the dataset vector reads (empty for the histograms).
        seeded: The noise came from a test seed: NOT private.
    """

    name: str
    eps: float
    delta: float
    sigma: float
    sample_rate: float
    adjacency: str
    clip_norm: dict[str, float]
    mechanism: str
    accountant: str
    noise: str
    layers: list[int] = field(default_factory=list)
    pool: str | None = None
    clip_norm_source: str = "given"
    seeded: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PrivacyStep":
        return cls(**{**d, "clip_norm": dict(d["clip_norm"]), "layers": list(d.get("layers", []))})


def compose_sequential(steps: list[PrivacyStep]) -> tuple[float, float]:
    """(eps, delta) of running ``steps`` one after another on the same records
    (basic composition: valid adaptively, easy to audit)."""
    return float(sum(s.eps for s in steps)), float(sum(s.delta for s in steps))


@dataclass(frozen=True)
class PrivacyReport:
    """The guarantee of one release (all its private steps, every class).

    ``eps`` / ``delta`` are what the steps spend together
    (:func:`compose_sequential`); ``budget_eps`` / ``budget_delta`` what was asked for.
    ``sweep`` (eps sweeps only) says how publishing all the sweep's releases
    together composes: the sum, and the tighter joint figure.
    """

    steps: list[PrivacyStep]
    budget_eps: float
    budget_delta: float
    method: str
    fixed_shots: str
    classes: list[str] | None
    public: list[str]
    generation: dict[str, Any] | None = None
    sweep: dict[str, Any] | None = None

    @property
    def eps(self) -> float:
        return compose_sequential(self.steps)[0]

    @property
    def delta(self) -> float:
        return compose_sequential(self.steps)[1]

    @property
    def seeded(self) -> bool:
        return any(s.seeded for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "guarantee": {"eps": self.eps, "delta": self.delta, "budget_eps": self.budget_eps,
                          "budget_delta": self.budget_delta, "unit": "one private record",
                          "adjacency": self.steps[0].adjacency if self.steps else None},
            "composition": COMPOSITION,
            "steps": [s.to_dict() for s in self.steps],
            "method": self.method,
            "fixed_shots": self.fixed_shots,
            "classes": self.classes,
            "public": self.public,
            "generation": self.generation,
            "sweep": self.sweep,
            "seeded": self.seeded,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PrivacyReport":
        """Read a report written by :meth:`to_dict`; CorruptFileError otherwise."""
        try:
            if d.get("schema_version") != SCHEMA_VERSION:
                raise ValueError(f"schema_version {d.get('schema_version')!r}, expected {SCHEMA_VERSION}")
            g = d["guarantee"]
            report = cls([PrivacyStep.from_dict(s) for s in d["steps"]], g["budget_eps"], g["budget_delta"],
                         d["method"], d["fixed_shots"], d["classes"], list(d["public"]), d.get("generation"),
                         d.get("sweep"))
            if not (math.isclose(report.eps, g["eps"]) and math.isclose(report.delta, g["delta"])):
                raise ValueError("the guarantee does not add up to its steps")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CorruptFileError(f"not an epsvec privacy report ({e})") from None
        return report


def sweep_composition(releases: list[list[PrivacyStep]], eps_grid: list[float], delta: float) -> dict[str, Any]:
    """How ``k`` releases (each a list of steps: one per budget of a sweep)
    compose when all are published: by the sum of their budgets, and, step
    by step, exactly as one Gaussian release of that step's sum with
    ``sigma_eff = (sum sigma_j^-2)^-1/2`` (the precision-weighted average of
    the releases is sufficient for them all), the steps then adding up."""
    from .privacy import gaussian_epsilon

    joint_sigma, joint_eps, joint_delta = {}, 0.0, 0.0
    for name in [s.name for s in releases[0]]:
        steps = [s for release in releases for s in release if s.name == name]
        joint_sigma[name] = sum(s.sigma ** -2 for s in steps) ** -0.5
        joint_eps += gaussian_epsilon(joint_sigma[name], steps[0].delta, adjacency=steps[0].adjacency)
        joint_delta += steps[0].delta
    return {"eps": list(eps_grid), "sum_eps": float(sum(eps_grid)), "sum_delta": delta * len(eps_grid),
            "joint_sigma": joint_sigma, "joint_eps": joint_eps, "joint_delta": joint_delta,
            "rule": "each release is (eps, delta)-DP alone; publishing all of them is (sum_eps, sum_delta)-DP, "
                    "and also (joint_eps, joint_delta)-DP: k Gaussian releases of one sum act as one with "
                    "sigma_eff = (sum sigma_j^-2)^-1/2 (joint_sigma, per step), and the steps add up"}
