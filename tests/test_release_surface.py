"""The console is a release surface too. Everything ``extract`` and
``synthesize`` print by default (progress lines, warnings, messages), from
the CLI and from the Python API, must be the same for neighbouring
datasets: D, D plus one long record (cut to max_example_tokens), and D
minus one record. Only timing figures may differ. The exact counts go to
the curator-only channel, and only on request."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import epsvec
from epsvec import cli

WORDS = "good bad film plot actor scene boring great dull fun".split()
D = [(" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6)), "pos" if i % 3 else "neg") for i in range(9)]
LONG = (" ".join(["This is a sentence about the film and its many actors."] * 120), "pos")  # > 800 tokens
NEIGHBOURS = {"D": D, "D + long": D + [LONG], "D - 1": D[:4] + D[5:]}


def masked(output: str) -> str:
    """The output with its timing figures (elapsed, rates, seconds) replaced."""
    output = re.sub(r"\d+:\d\d(:\d\d)?", "<time>", output)
    output = re.sub(r"\s*([\d.]+|\?)\s*[A-Za-z]*/s|\s*[\d.]+\s*s/[A-Za-z]+", " <rate>", output)  # tqdm: 12.3prompt/s
    output = re.sub(r"\d+(\.\d+)?\s*m?s\b", "<time>", output)
    lines = output.splitlines()  # a busy machine may make tqdm redraw a bar once more: count it once
    return "\n".join(line for i, line in enumerate(lines) if i == 0 or line != lines[i - 1])


def run_cli(cwd, *args):
    proc = subprocess.run([sys.executable, "-m", "epsvec.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + "\n---stderr---\n" + proc.stderr


def write_records(path, records):
    with open(path, "w") as f:
        for text, label in records:
            f.write(json.dumps({"text": text, "label": label}) + "\n")


@pytest.mark.parametrize("command", ["extract", "synthesize"])
def test_cli_prints_the_same_for_neighbouring_datasets(tiny_models, tmp_path, command):
    outputs = {}
    for name, records in NEIGHBOURS.items():
        cwd = tmp_path / name.replace(" ", "")
        cwd.mkdir()
        write_records(cwd / "private.jsonl", records)
        args = [command, "private.jsonl", "--label-column", "label", "--classes", "neg,pos", "--eps", 4,
                "--model", tiny_models["llama"], "--max-new-tokens", 6, "--num-negatives", 4, "--seed", 1,
                "--out", "out"]
        if command == "synthesize":
            # Unsteered samples of free lengths: the same on every dataset (released values may differ).
            args += ["--n", 2, "--strength", 0, "--length-eps", "none"]
        outputs[name] = masked(run_cli(cwd, *args))
    assert "reading the private records" in outputs["D"], "the progress line is shown (by time only)"
    assert outputs["D + long"] == outputs["D"]
    assert outputs["D - 1"] == outputs["D"]


def test_python_api_prints_and_warns_the_same_for_neighbouring_datasets(tiny_models, capfd):
    model = epsvec.load_model(tiny_models["llama"], device="cpu")
    shown = {}
    for name, records in NEIGHBOURS.items():
        texts, labels = zip(*records)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            epsvec.extract(list(texts), eps=4, labels=list(labels), classes=["neg", "pos"], model=model, seed=1,
                           num_negatives=4, negative_max_new_tokens=6, progress=True)
        out, err = capfd.readouterr()
        shown[name] = masked(out + err + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught))
    assert "reading the private records" in shown["D"]
    assert shown["D + long"] == shown["D"] and shown["D - 1"] == shown["D"]


def test_private_diagnostics_only_on_request_and_under_their_heading(tiny_models, tmp_path):
    write_records(tmp_path / "private.jsonl", D + [LONG])
    args = ["extract", "private.jsonl", "--label-column", "label", "--classes", "neg,pos", "--eps", 4, "--model",
            tiny_models["llama"], "--max-new-tokens", 6, "--num-negatives", 4, "--no-progress"]
    shown = run_cli(tmp_path, *args, "--out", "a", "--show-private-diagnostics")
    heading = shown.index("CURATOR-ONLY DIAGNOSTICS")
    assert "class 'neg': 3 records, 0 cut to 800 tokens" in shown[heading:]
    assert "class 'pos': 7 records, 1 cut to 800 tokens" in shown[heading:]
    assert "mostly noise" in shown[heading:]
    hidden = run_cli(tmp_path, *args, "--out", "b")
    assert "records" not in hidden and "CURATOR" not in hidden
    saved = "".join(p.read_text(errors="replace") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert "CURATOR" not in saved and "7 records" not in saved, "never saved with the release"


def test_python_api_diagnostics_are_collected_only_inside_the_block(tiny_models):
    model = epsvec.load_model(tiny_models["llama"], device="cpu")
    texts, labels = zip(*(D + [LONG]))
    kw = dict(eps=4, labels=list(labels), classes=["neg", "pos"], model=model, num_negatives=4,
              negative_max_new_tokens=6, progress=False)
    with epsvec.curator_diagnostics() as diagnostics:
        vectors = epsvec.extract(list(texts), **kw)
    assert [(c.label, c.records, c.truncated) for c in diagnostics.classes] == [("neg", 3, 0), ("pos", 7, 1)]
    assert all(c.clipped is not None and c.nonfinite is False for c in diagnostics.classes)
    assert "7 records" in str(diagnostics) and "7" not in repr(diagnostics)
    assert "records" not in repr(vectors["pos"]) and "truncated" not in json.dumps(vectors["pos"].privacy)
    epsvec.extract(list(texts), **kw)
    assert len(diagnostics.classes) == 2, "nothing is collected outside the block"
    with epsvec.curator_diagnostics() as sampled:
        epsvec.extract(list(texts), sample_rate=0.5, **kw)
    assert [(c.records, c.clipped, c.nonfinite) for c in sampled.classes] == [(3, None, None), (7, None, None)], \
        "under Poisson sampling nothing the coins decide is shown, even to the curator"


def test_diagnostics_notes_say_what_to_fix(tiny_models):
    model = epsvec.load_model(tiny_models["llama"], device="cpu")
    kw = dict(model=model, negatives=["a b c", "d e f", "g h"], layers=[1], progress=False)
    with epsvec.curator_diagnostics() as diagnostics:
        epsvec.extract([t for t, _ in D], eps=1.0, delta=0.5, clip_norm=1e-6, **kw)
        epsvec.extract([t for t, _ in D], eps=1.0, **kw)
    [large_delta, small_class] = [c.notes for c in diagnostics.classes]
    assert any("exceeds 1/records" in n for n in large_delta)
    assert diagnostics.classes[0].clipped == len(D), "a tiny clip norm binds every term"
    assert any("mostly noise" in n for n in small_class) and not any("exceeds" in n for n in small_class)


def test_an_unwritable_out_is_refused_before_any_record_is_read(tiny_models, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "something").write_text("x")
    (tmp_path / "a-file").write_text("x")
    write_records(tmp_path / "bad.jsonl", D + [("  ", "pos")])  # an invalid record: reading it would fail
    for out, needle in (("taken", "not an epsvec release"), ("a-file/release", "not a directory")):
        proc = subprocess.run([sys.executable, "-m", "epsvec.cli", "extract", "bad.jsonl", "--label-column", "label",
                               "--classes", "neg,pos", "--eps", "4", "--model", str(tiny_models["llama"]), "--out", out],
                              capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert proc.returncode == cli.EXIT_USAGE and needle in proc.stderr, proc.stderr
        assert "is empty" not in proc.stderr, "refused before the records were read"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "bad.jsonl", "taken"], "nothing left behind"


def test_an_engine_failure_while_reading_records_aborts_the_release(tiny_models, tmp_path, monkeypatch):
    """A failure that may come from one record (out of memory, say) releases
    nothing, says so, and leaves no file behind."""
    from epsvec import release
    from epsvec.extract import ClassRelease

    def out_of_memory(self, model, pieces):
        raise epsvec.EngineError("CUDA out of memory")

    monkeypatch.setattr(ClassRelease, "offer_records", out_of_memory)
    model = epsvec.load_model(tiny_models["llama"], device="cpu")
    with pytest.raises(epsvec.ReleaseAbortedError, match="nothing was released: CUDA out of memory"):
        epsvec.extract([t for t, _ in D], eps=4, model=model, num_negatives=4, negative_max_new_tokens=6,
                       progress=False)
    monkeypatch.undo()

    # A save that fails halfway leaves no partial release; one a killed run left is finished or removed.
    _, plans, report = epsvec.synthesis.private_steps([t for t, _ in D], 4, model=model, num_negatives=4,
                                                      progress=False, max_new_tokens=6)

    def disk_full(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(epsvec.DatasetVector, "save", disk_full)
    with pytest.raises(OSError, match="disk full"):
        release.save(str(tmp_path / "r"), plans, report, {})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    release.save(str(tmp_path / "whole"), plans, report, {})
    (tmp_path / "whole").rename(tmp_path / "r.partial")  # as if killed before the rename
    release.recover(str(tmp_path / "r"))
    assert release.exists(str(tmp_path / "r")) and not (tmp_path / "r.partial").exists()
    (tmp_path / "s.partial" / "vectors").mkdir(parents=True)  # killed before plan.json: not a release
    release.recover(str(tmp_path / "s"))
    assert not (tmp_path / "s.partial").exists() and not (tmp_path / "s").exists()


def test_bad_privacy_parameters_and_records_are_refused_before_the_model_loads(tmp_path):
    write_records(tmp_path / "private.jsonl", D)
    base = ["extract", "private.jsonl", "--label-column", "label", "--model", "/no/such/model", "--out", "out"]
    for extra, code, needle in ((["--classes", "neg,pos", "--eps", "0"], cli.EXIT_PRIVACY, "eps"),
                                (["--classes", "neg,pos", "--eps", "4", "--delta", "1"], cli.EXIT_PRIVACY, "delta"),
                                (["--classes", "neg", "--eps", "4"], cli.EXIT_USAGE, "not in classes")):
        proc = subprocess.run([sys.executable, "-m", "epsvec.cli", *base, *extra], capture_output=True, text=True,
                              cwd=tmp_path, timeout=600)
        assert proc.returncode == code and needle in proc.stderr, proc.stderr


def test_the_engine_refuses_a_bad_private_prompt_without_naming_the_record(tiny_models):
    """The engine's last check of private prompts (a backstop behind the
    Python checks) says what is wrong, never which record or its values."""
    model = epsvec.load_model(tiny_models["llama"], device="cpu")
    config, engine = model.config, model._engine
    release = epsvec._epsvec.PrivateRelease(config.num_layers, config.hidden_size, 1.0, 1.0, 0)
    baseline = np.zeros(config.num_layers * config.hidden_size, np.float32)
    layers = list(range(config.num_layers))
    cases = {"more tokens than the model's context": [[5], [5] * (config.context_length + 3)],
             "token id outside the vocabulary": [[5], [5, config.vocab_size + 17]]}
    for problem, tails in cases.items():
        with pytest.raises(epsvec.EpsvecError, match=problem) as caught:
            release.offer_prompts(engine, [1], tails, layers, "mean", baseline)
        private_values = {str(len(tails[1]) + 1), str(config.vocab_size + 17)}  # the prompt's length, the bad id
        assert not re.search(r"\brecord \d", str(caught.value))
        assert not private_values & set(re.findall(r"\d+", str(caught.value)))


def test_a_record_outside_the_vocabulary_aborts_without_naming_it(tiny_models, tmp_path):
    """A tokenizer that knows a token the embedding table lacks (as some
    converted GGUF vocabularies do) fails on the record that uses it; the
    error says what is wrong, never which record or the token's id."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_models["llama"], model_dir)
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    tokenizer["added_tokens"].append({"id": vocab + 17, "content": "<|spare|>", "single_word": False, "lstrip": False,
                                      "rstrip": False, "normalized": False, "special": False})
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer))
    model = epsvec.load_model(model_dir, device="cpu")
    texts = [t for t, _ in D[:5]] + ["a fine film <|spare|>"] + [t for t, _ in D[5:]]
    for run in (lambda: epsvec.extract(texts, model=model, eps=4, num_negatives=4),
                lambda: epsvec.synthesize(texts, n=2, model=model, eps=4, num_negatives=4, max_new_tokens=8)):
        with pytest.raises(epsvec.EpsvecError, match="outside the model's vocabulary") as caught:
            run()
        assert not re.search(r"\b(text|record) \d", str(caught.value))
        assert str(vocab + 17) not in str(caught.value) and "5" not in re.findall(r"\d+", str(caught.value))
