"""Getting texts and labels out of what users hold: lists, HF `datasets`,
and JSONL / CSV / Parquet files."""

from __future__ import annotations

import csv
import json
import os
from typing import Any

from .errors import InvalidInputError

__all__ = ["records_from", "read_table", "declared_classes"]


def records_from(texts: Any, labels: Any = None, text_column: str = "text", label_column: str | None = "label",
                 classes: Any = None) -> tuple[Any, list | None, list | None]:
    """``(texts, labels, classes)`` from a list of strings (with optional
    labels) or a ``datasets.Dataset`` (its ``text_column``; ``label_column``
    when the dataset has it). A ``ClassLabel`` column's ids become their
    names, and its declared names are the classes unless ``classes`` is given:
    the feature is the dataset's public schema, not a reading of its rows."""
    check_classes_type(classes)
    classes = None if classes is None else list(classes)
    if not hasattr(texts, "column_names"):
        return texts, None if labels is None else list(labels), classes
    dataset = texts
    columns = dataset.column_names
    if text_column not in columns:
        raise InvalidInputError(f"the dataset has no text column {text_column!r}; its columns are {columns}")
    if labels is None and label_column is not None and label_column in columns:
        labels = dataset[label_column]
        names = getattr(dataset.features[label_column], "names", None)
        if names is not None:  # a ClassLabel: ids -> names, as users read them
            labels = [names[i] for i in labels]
            classes = list(names) if classes is None else classes
    return dataset[text_column], None if labels is None else list(labels), classes


def check_text(text, name: str) -> None:
    """A record must be a non-empty string a tokenizer can take."""
    if not isinstance(text, str):
        raise TypeError(f"{name} is a {type(text).__name__}, not a string")
    if not text.strip():
        raise InvalidInputError(f"{name} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        raise InvalidInputError(f"{name} is not valid Unicode text") from None


def check_classes_type(classes) -> None:
    if isinstance(classes, str) or not (classes is None or isinstance(classes, (list, tuple, set, frozenset))):
        raise TypeError(f"classes must be a list of labels, got {type(classes).__name__}")


def declared_classes(classes) -> list:
    """The caller's public class list, checked: given, non-empty, distinct."""
    if classes is None:
        raise InvalidInputError("labels need classes=[...]: the set of classes must be public, declared in advance, "
                                "not read from the private data (a label seen only in one record would reveal it)")
    order = list(classes)
    if not order or len(set(order)) != len(order):
        raise InvalidInputError(f"classes must be a non-empty list of distinct labels, got {order!r}")
    return order


def read_table(path: str | os.PathLike, text_column: str = "text", label_column: str | None = None
               ) -> tuple[list[str], list | None]:
    """Texts (and labels) from a ``.jsonl``, ``.csv`` (``.tsv``) or ``.parquet`` file.

    Raises:
        InvalidInputError: unreadable file, unknown format, or a missing column
            (the message names the file, line and columns).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidInputError(f"no such file: {path}")
    lower = path.lower()
    if lower.endswith((".jsonl", ".json")):
        rows = _jsonl_rows(path)
    elif lower.endswith((".csv", ".tsv", ".csv.bz2", ".csv.gz")):
        rows = _csv_rows(path, "\t" if lower.endswith(".tsv") else ",")
    elif lower.endswith(".parquet"):
        rows = _parquet_rows(path)
    else:
        raise InvalidInputError(f"{path}: unknown format; use .jsonl, .csv, .tsv or .parquet")
    if not rows:
        raise InvalidInputError(f"{path} has no rows")
    columns = list(rows[0])
    for name in (text_column, label_column):
        if name is not None and name not in columns:
            raise InvalidInputError(f"{path} has no column {name!r}; its columns are {columns}")
    texts = []
    for i, row in enumerate(rows):
        value = row.get(text_column)
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(f"{path}, row {i + 1}: {text_column!r} is empty or not text ({value!r:.40})")
        texts.append(value)
    labels = None if label_column is None else [row.get(label_column) for row in rows]
    return texts, labels


def _jsonl_rows(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"{path}, line {number}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise InvalidInputError(f"{path}, line {number}: expected a JSON object per line")
            rows.append(row)
    return rows


def _csv_rows(path: str, delimiter: str) -> list[dict]:
    import bz2
    import gzip

    opener = bz2.open if path.lower().endswith(".bz2") else gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f, delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error, OSError, EOFError) as e:
        raise InvalidInputError(f"{path}: cannot read as CSV ({e})") from None


def _parquet_rows(path: str) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInputError("reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for bad files
        raise InvalidInputError(f"{path}: cannot read as Parquet ({e})") from None
