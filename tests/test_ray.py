"""Extraction and generation on a real local Ray cluster (2 CPUs, started
and stopped here), against the in-process path on the same records."""

from __future__ import annotations

import json
import os
import re
import signal
import warnings

import numpy as np
import psutil
import pytest
import ray
import ray.data

import epsvec
from epsvec import distributed
from epsvec.cli import main as cli
from epsvec.distributed import RayConfig
from epsvec.errors import InvalidInputError, PrivacyError

CLASSES = ["fresh", "rotten"]
# Enough public negatives and records to exercise every part; far too few for a useful vector.
KW = dict(eps=4, noise_seed=11, seed=3, num_negatives=8, layers=[14, 15], progress=False)
pytestmark = pytest.mark.filterwarnings(
    # Ray's own, from inside Ray: deprecations, and more actors than tiny inputs need.
    "ignore::DeprecationWarning:ray.*", "ignore:The minimum number of concurrent actors")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def records():
    texts, labels = epsvec.corpora.load("rotten_tomatoes")
    return texts[:48], labels[:48]


def as_dataset(texts, labels=None):
    rows = [{"text": t} if labels is None else {"text": t, "label": l} for t, l in zip(texts, labels or texts)]
    return ray.data.from_items(rows)


def test_extract_on_ray_is_bit_identical(cluster, default_model, records):
    texts, labels = records
    kw = dict(model=default_model, negative_max_new_tokens=24, **KW)
    want = epsvec.extract(texts, labels=labels, classes=CLASSES, **kw)
    got = epsvec.extract(as_dataset(texts, labels), classes=CLASSES, ray=RayConfig(workers=2, batch_size=8), **kw)
    for label in CLASSES:
        assert np.array_equal(got[label].array, want[label].array)
        assert got[label].privacy == want[label].privacy and got[label].privacy["seeded"]
    # One class, unlabelled, in tasks of another size.
    want = epsvec.extract(texts, **kw)
    got = epsvec.extract(as_dataset(texts), ray=RayConfig(workers=2, batch_size=5), **kw)
    assert np.array_equal(got.array, want.array)


def test_a_worker_killed_mid_run_changes_nothing(cluster, default_model, records, monkeypatch):
    """SIGKILL one actor after the first partial sum has arrived: Ray restarts
    it and reruns its task, and the vectors are still bit-identical."""
    texts, labels = records
    kw = dict(model=default_model, classes=CLASSES, negative_max_new_tokens=24, **KW)
    want = epsvec.extract(texts, labels=labels, **kw)
    killed = []
    rows = distributed._rows

    def kill_after_first(ds, progress):
        for row in rows(ds, progress):
            if not killed and "partial_sum" in row:  # not the records' check, which runs first
                actors = [p for p in psutil.process_iter(["cmdline"])
                          if "_RecordWorker" in " ".join(p.info["cmdline"] or [])]
                os.kill(actors[0].pid, signal.SIGKILL)
                killed.append(actors[0].pid)
            yield row

    monkeypatch.setattr(distributed, "_rows", kill_after_first)
    got = epsvec.extract(as_dataset(texts, labels), ray=RayConfig(workers=2, batch_size=4), **kw)
    assert killed
    for label in CLASSES:
        assert np.array_equal(got[label].array, want[label].array)


def test_bad_records_and_options_are_clear_errors(cluster, default_model):
    kw = dict(model=default_model, classes=CLASSES, negative_max_new_tokens=8, **{**KW, "num_negatives": 2})
    with pytest.raises(InvalidInputError, match="'stale', which is not in classes"):
        epsvec.extract(as_dataset(["Fine.", "Odd."], ["fresh", "stale"]), **kw)
    with pytest.raises(InvalidInputError, match="'text' is empty"):
        epsvec.extract(as_dataset(["Fine.", "  "], ["fresh", "rotten"]), **kw)
    with pytest.raises(TypeError, match="not a string"):
        epsvec.extract(as_dataset([3, 4], ["fresh", "rotten"]), **kw)
    # Every record is checked before any model work (no model loads from this path).
    with pytest.raises(InvalidInputError, match="'stale', which is not in classes"):
        epsvec.extract(as_dataset(["Fine."] * 50 + ["Odd."], ["fresh"] * 50 + ["stale"]),
                       **{**kw, "model": "/no/such/model"})
    # Refused before any work.
    with pytest.raises(InvalidInputError, match="need classes"):
        epsvec.extract(as_dataset(["Fine."], ["fresh"]), **{**kw, "classes": None})
    with pytest.raises(InvalidInputError, match="no text column 'body'"):
        epsvec.extract(as_dataset(["Fine."], ["fresh"]), text_column="body", **kw)
    with pytest.raises(PrivacyError, match="sample_rate is not offered on Ray"):
        epsvec.extract(as_dataset(["Fine."], ["fresh"]), sample_rate=0.5, **kw)
    with pytest.raises(InvalidInputError, match="not offered on Ray"):
        epsvec.synthesize(as_dataset(["Fine."], ["fresh"]), 2, 4, model=default_model, classes=CLASSES,
                          fixed_shots="private", progress=False)
    with pytest.raises(TypeError, match="classes must be a list"):
        epsvec.extract(as_dataset(["Fine."], ["fresh"]), **{**kw, "classes": "fresh"})
    with pytest.raises(InvalidInputError, match="cannot include None"):
        epsvec.extract(as_dataset(["Fine."], ["fresh"]), **{**kw, "classes": ["fresh", None]})
    with pytest.raises(InvalidInputError, match="empty|no records"):
        epsvec.extract(as_dataset(["Fine."]).limit(0), **{**kw, "classes": None})
    context = ray.data.DataContext.get_current()
    context.max_errored_blocks = 1  # Ray may then drop a failed batch of records silently
    try:
        with pytest.raises(InvalidInputError, match="max_errored_blocks"):
            epsvec.extract(as_dataset(["Fine."], ["fresh"]), **kw)
    finally:
        context.max_errored_blocks = 0
    with pytest.raises(InvalidInputError, match="workers"):
        RayConfig(workers=0)


def test_the_console_is_the_same_for_neighbouring_datasets_on_ray(cluster, default_model, records, capfd):
    """Ray's own progress counts rows and blocks: it stays off while records
    are read, so one record more or less prints nothing new."""
    from test_release_surface import masked

    texts, labels = records
    kw = dict(model=default_model, classes=CLASSES, negative_max_new_tokens=8, ray=RayConfig(workers=1, batch_size=4),
              **{**KW, "num_negatives": 2, "progress": True})

    def console():
        out, err = capfd.readouterr()
        out = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+|dataset_\w+|session_[\w-]+|\b[0-9a-f]{16,}\b", "<id>",
                     out + err)
        return masked(out)

    def shown(n):
        epsvec.extract(as_dataset(texts[:n], labels[:n]), **kw)
        return console()

    shown(16)  # Ray logs some notices once per process
    assert shown(17) == shown(16) and "reading the private records" in shown(15)

    # synthesize on Ray: its length pass over the records and the generation too.
    def synthesized(n):
        epsvec.synthesize(as_dataset(texts[:n], labels[:n]), 2, 4, model=default_model, classes=CLASSES,
                          max_new_tokens=4, num_negatives=2, layers=[14, 15], seed=3, noise_seed=11,
                          ray=RayConfig(workers=1, batch_size=4))
        return console()

    synthesized(16)
    assert synthesized(17) == synthesized(16) and "reading the private records" in synthesized(15)


def test_synthesize_on_ray_equals_in_process(cluster, default_model, records):
    """Records read by actors (their length bins, then their terms), samples
    generated by actors (shards aligned to the batches), then filtered by the
    vector on the driver: the same length histograms, vectors, texts and
    report as in-process."""
    texts, labels = records
    kw = dict(model=default_model, classes=CLASSES, max_new_tokens=16, num_negatives=8, batch_size=2,
              layers=[14, 15], oversample=2, progress=False, seed=5, noise_seed=9)
    want = epsvec.synthesize(texts, 10, 4, labels=labels, **kw)
    got = epsvec.synthesize(as_dataset(texts, labels), 10, 4, ray=RayConfig(workers=2, batch_size=7), **kw)
    assert [p.lengths for p in got.plans] == [p.lengths for p in want.plans]
    assert all(p.lengths is not None for p in got.plans), "the length histogram is on by default, on Ray too"
    assert got.texts == want.texts and got.labels == want.labels
    assert got.report.to_dict() == want.report.to_dict()
    assert len(set(got.texts)) > 10


def test_cli_generate_on_ray_equals_the_file_and_resumes(cluster, records, tmp_path):
    texts, labels = records
    data = tmp_path / "private.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in zip(texts, labels)))
    release = str(tmp_path / "release")
    common = ["--seed", "4", "--no-progress", "--device", "cpu"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli(["extract", str(data), "--label-column", "label", "--classes", "fresh,rotten", "--eps", "4",
                    "--num-negatives", "4", "--max-new-tokens", "16", "--out", release, *common]) == 0
    sampling = ["--n", "9", "--batch-size", "2", "--max-new-tokens", "12", "--shard-batches", "2", *common]
    assert cli(["generate", release, "--out", str(tmp_path / "local.jsonl"), *sampling]) == 0
    shards = tmp_path / "shards"
    assert cli(["generate", release, "--ray", "--workers", "2", "--out", str(shards), *sampling]) == 0

    def lines():
        return [line for part in sorted(os.listdir(shards)) if part.endswith(".jsonl")
                for line in (shards / part).read_text().splitlines()]

    local = (tmp_path / "local.jsonl").read_text().splitlines()
    assert lines() == local and len(local) == 18
    assert len(os.listdir(shards)) == 6  # per class, samples 0-3, 4-7 and 8
    # A shard lost (an interrupted run): the same command writes just that one again.
    parts = sorted(p for p in os.listdir(shards) if p.endswith(".jsonl"))
    (shards / parts[1]).unlink()
    stamps = {p: (shards / p).stat().st_mtime_ns for p in parts if p != parts[1]}
    assert cli(["generate", release, "--ray", "--workers", "2", "--out", str(shards), *sampling]) == 0
    assert lines() == local
    assert all((shards / p).stat().st_mtime_ns == t for p, t in stamps.items())
    # Other shard boundaries would not line up with the shards there: refused, as is a foreign directory.
    assert cli(["generate", release, "--ray", "--out", str(shards), *sampling[:-len(common)], "--shard-batches", "3",
                *common]) == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert cli(["generate", release, "--ray", "--overwrite", "--out", str(tmp_path / "mine"), *sampling]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
