"""epsvec.evaluate and `epsvec evaluate`: MAUVE against the reference
package, the classifiers against scikit-learn, form by hand, and a planted
copy of a private record found by the curator-only leakage check."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import epsvec
from epsvec import metrics, release

mauve_ref = pytest.importorskip("mauve")
pytest.importorskip("sentence_transformers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def corpus():
    """Real labelled texts, split into private, reference (held out) and 'synthetic' (more real text)."""
    texts, labels = epsvec.corpora.load("rotten_tomatoes")
    rows = [(t, l) for t, l in zip(texts, labels) if 6 <= len(t.split()) <= 40]
    by_class = {c: [r for r in rows if r[1] == c][:150] for c in ("fresh", "rotten")}
    split = lambda lo, hi: [r for c in by_class for r in by_class[c][lo:hi]]
    return {"private": split(0, 50), "reference": split(50, 100), "synthetic": split(100, 150)}


def columns(rows):
    return [t for t, _ in rows], [l for _, l in rows]


def test_fidelity_utility_and_form_against_their_references(corpus):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score

    syn, syn_labels = columns(corpus["synthetic"])
    ref, ref_labels = columns(corpus["reference"])
    syn[0] = "great great great great great great"  # degenerate: a 3-gram four times
    report = epsvec.evaluate(syn, ref, labels=syn_labels, reference_labels=ref_labels, seeds=(0, 1), progress=False)

    p, q = metrics.embed(ref), metrics.embed(syn)
    want = [mauve_ref.compute_mauve(p_features=p, q_features=q, seed=s, mauve_scaling_factor=5, num_buckets="auto",
                                    kmeans_explained_var=0.9, kmeans_num_redo=5, verbose=False).mauve for s in (0, 1)]
    assert report.fidelity["pooled"]["scores"] == pytest.approx(want, abs=1e-12)
    assert set(report.fidelity["per_class"]) == {"fresh", "rotten"}
    assert report.fidelity["pooled"]["n_synthetic"] == 100 and report.counts["reference"] == 100

    train = np.array([i % 50 % 2 == 0 for i in range(100)])  # every other reference text of each class
    test_labels = np.array(ref_labels)[~train]
    tstr = LogisticRegression(max_iter=2000).fit(q, syn_labels).predict(p[~train])
    assert report.utility["train_synthetic_test_real"]["accuracy"] == pytest.approx(accuracy_score(test_labels, tstr))
    assert 0.5 < report.utility["train_real_test_real"]["accuracy"] <= 1

    assert report.form["degenerate_share"] == pytest.approx(1 / 100) and report.form["empty_share"] == 0
    assert report.form["diversity"]["synthetic"] == metrics.diversity(syn)
    assert report.leakage is None and "leakage" not in report.to_json()


def test_a_planted_private_record_is_found_and_kept_curator_only(corpus, tmp_path):
    syn = columns(corpus["synthetic"])[0]
    ref = columns(corpus["reference"])[0]
    private = columns(corpus["private"])[0]
    planted = 37
    syn[12] = private[planted]  # a verbatim copy
    long = next(j for j, t in enumerate(private) if len(t.split()) >= 12 and j != planted)
    syn[20] = "I must say that " + " ".join(private[long].split()[:9]) + " and so on"  # a 9-word run
    report = epsvec.evaluate(syn, ref, private, seeds=(0,), progress=False)

    leak = report.leakage
    copies = {c["sample"]: c for c in leak.copies}
    assert copies[12]["private"] == planted and copies[12]["distance"] < 1e-5
    assert copies[12]["shared_words"] == len(private[planted].split())
    assert copies[20]["shared_words"] >= 9 and any(o["sample"] == 20 and o["private"] == long for o in leak.overlaps)
    assert leak.closer_than_reference >= 1 / 100, "the copy is closer than 95% of unseen real texts"

    paths = report.save(tmp_path / "eval")
    names = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert names == ["CURATOR-ONLY-leakage.json", "CURATOR-ONLY-leakage.png", "evaluation.html", "evaluation.json",
                     "evaluation.png"] and len(paths) == 5
    public = (tmp_path / "eval" / "evaluation.json").read_text() + (tmp_path / "eval" / "evaluation.html").read_text()
    assert private[planted] not in public and "shared_words" not in public and "private" not in public
    assert json.loads((tmp_path / "eval" / "CURATOR-ONLY-leakage.json").read_text())["copies"][0]["sample"] in (12, 20)


def test_bad_input_is_a_clear_error(corpus, tmp_path, tiny_models):
    syn, syn_labels = columns(corpus["synthetic"])
    ref, ref_labels = columns(corpus["reference"])
    with pytest.raises(epsvec.InvalidInputError, match="synthetic is empty"):
        epsvec.evaluate([], ref, progress=False)
    with pytest.raises(epsvec.InvalidInputError, match="100 texts but 3 labels"):
        epsvec.evaluate(syn, ref, labels=["a", "b", "c"], progress=False)
    with pytest.raises(epsvec.InvalidInputError, match="one side only"):
        epsvec.evaluate(syn, ref, labels=syn_labels, reference_labels=["fresh"] * 100, progress=False)
    with pytest.raises(TypeError, match="not one string"):
        epsvec.evaluate("a text", ref, progress=False)
    # Nothing curator-only goes into a release directory.
    model = epsvec.load_model(tiny_models["llama"], device="cpu")
    _, plans, privacy = epsvec.synthesis.private_steps(syn[:6], 4, model=model, num_negatives=4, progress=False,
                                                       max_new_tokens=4)
    release.save(str(tmp_path / "release"), plans, privacy, {})
    report = epsvec.evaluate(syn[:40], ref[:40], seeds=(0,), progress=False)
    with pytest.raises(epsvec.InvalidInputError, match="release directory"):
        report.save(tmp_path / "release")


def test_cli_evaluate_writes_the_report_and_keeps_leakage_figures_off_the_console(corpus, tmp_path):
    def write(name, rows):
        with open(tmp_path / name, "w") as f:
            for text, label in rows:
                f.write(json.dumps({"text": text, "label": label}) + "\n")

    rows = list(corpus["synthetic"])
    rows[3] = corpus["private"][8]
    write("syn.jsonl", rows), write("ref.jsonl", corpus["reference"]), write("priv.jsonl", corpus["private"])
    proc = subprocess.run([sys.executable, "-m", "epsvec.cli", "evaluate", "syn.jsonl", "--reference", "ref.jsonl",
                           "--private", "priv.jsonl", "--label-column", "label", "--out", "eval"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "MAUVE, pooled" in proc.stdout and "MAUVE, fresh" in proc.stdout and "train synthetic" in proc.stdout
    assert "CURATOR-ONLY-leakage.json" in proc.stdout and corpus["private"][8][0] not in proc.stdout + proc.stderr
    leak = json.loads((tmp_path / "eval" / "CURATOR-ONLY-leakage.json").read_text())
    assert leak["copies"][0]["sample"] == 3 and leak["copies"][0]["private"] == 8


def test_synthesize_evaluates_its_samples_against_held_out_text(corpus, tiny_models, tmp_path):
    with open(tmp_path / "private.jsonl", "w") as f, open(tmp_path / "held_out.jsonl", "w") as g:
        for text, label in corpus["private"][:10] + corpus["private"][-10:]:
            f.write(json.dumps({"text": text, "label": label}) + "\n")
        for text, label in corpus["reference"][:20] + corpus["reference"][-20:]:
            g.write(json.dumps({"text": text, "label": label}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "epsvec.cli", "synthesize", "private.jsonl", "--label-column", "label",
                           "--classes", "fresh,rotten", "--eps", "4", "--n", "20", "--model", str(tiny_models["llama"]),
                           "--max-new-tokens", "8", "--num-negatives", "4", "--out", "run", "--no-progress",
                           "--evaluate-against", "held_out.jsonl"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "MAUVE, pooled" in proc.stdout and "MAUVE, rotten" in proc.stdout
    report = json.loads((tmp_path / "run" / "evaluation" / "evaluation.json").read_text())
    assert report["counts"] == {"synthetic": 40, "reference": 40}
    assert not any("CURATOR" in p.name for p in (tmp_path / "run").rglob("*")), "no leakage check here"


def test_form_and_leakage_helpers_by_hand():
    from epsvec import evaluation

    assert evaluation._longest_common_run("a b c d e".split(), "x b c d y".split()) == 3
    assert evaluation._longest_common_run(["a"], ["b"]) == 0
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    pairs = [(0, 1), (0, 2), (1, 2)]
    cos = [x[i] @ x[j] / np.linalg.norm(x[i]) / np.linalg.norm(x[j]) for i, j in pairs]
    assert evaluation._mean_cosine(x) == pytest.approx(np.mean(cos))
    assert evaluation._degenerate("") and evaluation._degenerate("to be to be to be to be")
    assert not evaluation._degenerate("a perfectly ordinary sentence about a film")
