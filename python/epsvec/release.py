"""A release directory: what the private steps produced, on disk.

``release/plan.json`` (per class: label, prompt domain, shots, prompt format, released
length histogram, vector file),
``release/privacy_report.json`` and ``release/vectors/*.safetensors``.
Everything in it is public (DP-released or chosen without private data), so
generating from it any number of times costs no privacy. It is written
atomically: a directory either holds a whole release or none. The files go
to ``PATH.partial`` first, ``plan.json`` last, and the directory is then
renamed; a failure removes ``PATH.partial``, and one left by a killed run
is finished (when whole) or removed by :func:`recover`, so a failed save
never leaves a second release lying about.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

from .errors import CorruptFileError, InvalidInputError
from .lengths import LengthHistogram
from .prompts import PromptFormat
from .report import PrivacyReport
from .synthesis import ClassPlan
from .vector import DatasetVector

PLAN = "plan.json"
REPORT = "privacy_report.json"


def check_writable(path: str) -> None:
    """Refuse, before any private work, a ``path`` a release cannot be saved
    to: an existing file or non-empty directory, or a place that cannot be
    written (tried with a temporary directory, removed at once)."""
    if os.path.exists(path) and not (os.path.isdir(path) and not os.listdir(path)):
        raise InvalidInputError(f"{path} exists and is not an epsvec release; choose another --out")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InvalidInputError(f"cannot create {path}: {parent} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".epsvec-write-check-", dir=parent))
    except OSError as e:
        raise OSError(f"cannot write a release to {path}: {e.strerror or e}") from None


def save(path: str, plans: list[ClassPlan], report: PrivacyReport, settings: dict) -> None:
    """Write a release to ``path`` (absent or an empty directory); on failure nothing is left."""
    tmp = path + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(os.path.join(tmp, "vectors"))
        classes = []
        for i, plan in enumerate(plans):
            entry = {"label": plan.label, "domain": plan.domain, "shots": plan.shots,
                     "format": plan.format.to_dict(),
                     "lengths": None if plan.lengths is None else plan.lengths.to_dict(), "vector": None}
            if plan.vector is not None:
                entry["vector"] = f"vectors/{i:03d}-{_slug(plan.label)}.safetensors"
                plan.vector.save(os.path.join(tmp, entry["vector"]))
            classes.append(entry)
        _write_json(os.path.join(tmp, REPORT), report.to_dict())
        _write_json(os.path.join(tmp, PLAN), {"classes": classes, "settings": settings})  # last: the release is whole
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover(path: str) -> None:
    """Finish or discard a save a killed run left in ``path.partial``: a whole
    release (its ``plan.json`` is written last) is moved into place, so the
    rerun reuses it rather than spending the budget again; anything else is
    removed."""
    tmp = path + ".partial"
    if not os.path.isdir(tmp):
        return
    if exists(tmp) and (not os.path.exists(path) or not os.listdir(path)):
        os.replace(tmp, path)
    else:
        shutil.rmtree(tmp)


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
                      PromptFormat.from_dict(c.get("format")),
                      None if c.get("lengths") is None else LengthHistogram.from_dict(c["lengths"]))
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
