"""A release directory: what the private steps produced, on disk.

``release/plan.json`` (per class: label, prompt domain, shots, prompt format, vector file),
``release/privacy_report.json`` and ``release/vectors/*.safetensors``.
Everything in it is public (DP-released or chosen without private data), so
generating from it any number of times costs no privacy. It is written
atomically: a directory either holds a whole release or none.
"""

from __future__ import annotations

import json
import os
import re
import shutil

from .errors import CorruptFileError
from .prompts import PromptFormat
from .report import PrivacyReport
from .synthesis import ClassPlan
from .vector import DatasetVector

PLAN = "plan.json"
REPORT = "privacy_report.json"


def save(path: str, plans: list[ClassPlan], report: PrivacyReport, settings: dict) -> None:
    """Write a release to ``path`` (must not exist yet)."""
    tmp = path + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "vectors"))
    classes = []
    for i, plan in enumerate(plans):
        entry = {"label": plan.label, "domain": plan.domain, "shots": plan.shots, "format": plan.format.to_dict(),
                 "vector": None}
        if plan.vector is not None:
            entry["vector"] = f"vectors/{i:03d}-{_slug(plan.label)}.safetensors"
            plan.vector.save(os.path.join(tmp, entry["vector"]))
        classes.append(entry)
    _write_json(os.path.join(tmp, PLAN), {"classes": classes, "settings": settings})
    _write_json(os.path.join(tmp, REPORT), report.to_dict())
    os.replace(tmp, path)


def load(path: str) -> tuple[list[ClassPlan], PrivacyReport, dict]:
    """``(plans, report, settings)`` of a release directory."""
    try:
        with open(os.path.join(path, PLAN), encoding="utf-8") as f:
            plan = json.load(f)
        with open(os.path.join(path, REPORT), encoding="utf-8") as f:
            report = PrivacyReport.from_dict(json.load(f))
        plans = [
            ClassPlan(c["label"], c["domain"], list(c["shots"]),
                      None if c["vector"] is None else DatasetVector.load(os.path.join(path, c["vector"])),
                      PromptFormat.from_dict(c.get("format")))
            for c in plan["classes"]
        ]
    except (OSError, ValueError, KeyError, TypeError, CorruptFileError) as e:
        raise CorruptFileError(f"{path} is not a complete epsvec release ({e})") from None
    return plans, report, plan.get("settings", {})


def exists(path: str) -> bool:
    return os.path.isfile(os.path.join(path, PLAN))


def _slug(label) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label))[:40] or "class"


def _write_json(path: str, value) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, default=str)
        f.write("\n")
