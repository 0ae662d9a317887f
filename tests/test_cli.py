"""The `epsvec` command: synthesize, extract, generate (interrupted and
resumed), info, and exit codes scripts can trust."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from epsvec import cli, release


WORDS = "good bad film plot actor scene boring great dull fun".split()


@pytest.fixture(scope="module")
def private_jsonl(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "private.jsonl"
    with open(path, "w") as f:
        for i in range(24):
            text = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6))
            f.write(json.dumps({"review": text, "stars": "pos" if i % 3 else "neg"}) + "\n")
    return path


def epsvec(*args, check_rc: int | None = 0, timeout: float = 600):
    """Run the command in a fresh process, as a user's script would."""
    proc = subprocess.run([sys.executable, "-m", "epsvec.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr
    return proc


def lines(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_synthesize_writes_samples_and_a_report_and_never_spends_twice(private_jsonl, tiny_models, tmp_path):
    out = tmp_path / "run"
    args = ["synthesize", private_jsonl, "--text-column", "review", "--label-column", "stars", "--classes", "neg,pos",
            "--eps", 4, "--n", 3,
            "--out", out, "--model", tiny_models["llama"], "--max-new-tokens", 6, "--seed", 1, "--no-progress"]
    first = epsvec(*args)
    assert "privacy report" in first.stdout
    rows = lines(out / "synthetic.jsonl")
    assert [r["label"] for r in rows] == ["neg"] * 3 + ["pos"] * 3 and [r["index"] for r in rows] == [0, 1, 2] * 2
    report = json.loads((out / "release" / "privacy_report.json").read_text())
    assert report["guarantee"]["eps"] == 4.0
    assert [s["name"] for s in report["steps"]] == ["length histogram", "dataset vector"]
    assert report["classes"] == ["neg", "pos"]
    plans = release.load(out / "release")[0]
    assert all(len(p.lengths.weights) == 6 for p in plans), "the release keeps the histograms (6 bins below 6 tokens)"
    stamp = os.path.getmtime(out / "release" / "plan.json")

    again = epsvec(*args)
    assert "reusing the private release" in again.stderr and "no new privacy cost" in again.stderr
    assert os.path.getmtime(out / "release" / "plan.json") == stamp and lines(out / "synthetic.jsonl") == rows

    changed = epsvec(*[5 if a == 4 else a for a in args], check_rc=cli.EXIT_USAGE)
    assert "spend the privacy budget twice" in changed.stderr and "eps" in changed.stderr
    plain = epsvec(*[tmp_path / "plain" if a == out else a for a in args], "--length-eps", "none")
    assert "privacy report" in plain.stdout
    assert [s["name"] for s in json.loads((tmp_path / "plain" / "release" / "privacy_report.json").read_text())[
        "steps"]] == ["dataset vector"]
    assert epsvec(*args, "--length-eps", "x", check_rc=cli.EXIT_USAGE).stderr.count("--length-eps")

    undeclared = epsvec(*[tmp_path / "other" if a == out else a for a in args if a not in ("--classes", "neg,pos")],
                        check_rc=cli.EXIT_USAGE)
    assert "--classes" in undeclared.stderr
    outside = epsvec(*["pos" if a == "neg,pos" else tmp_path / "other" if a == out else a for a in args],
                     check_rc=cli.EXIT_USAGE)
    assert "not in classes" in outside.stderr and not (tmp_path / "other").exists(), "refused before any work"


def test_generate_resumes_after_interrupts_without_losing_or_duplicating(private_jsonl, tiny_models, tmp_path):
    release = tmp_path / "release"
    epsvec("extract", private_jsonl, "--text-column", "review", "--eps", 4, "--out", release,
           "--model", tiny_models["llama"], "--max-new-tokens", 6, "--no-progress")
    n = 4000  # enough that the fast tiny model is still generating when each signal arrives
    gen = ["generate", release, "--n", n, "--seed", 5, "--max-new-tokens", 6, "--batch-size", 4,
           "--model", tiny_models["llama"], "--no-progress"]
    resumed = tmp_path / "resumed.jsonl"

    def start_and_stop(sig, min_lines):
        # A shell without job control starts background jobs with SIGINT ignored, and the child
        # would inherit that: give it the default, as an interactive terminal does.
        proc = subprocess.Popen([sys.executable, "-m", "epsvec.cli", *map(str, gen), "--out", resumed],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if resumed.exists() and resumed.read_bytes().count(b"\n") >= min_lines:
                break
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err

    rc, err = start_and_stop(signal.SIGINT, 200)
    assert rc == cli.EXIT_INTERRUPTED and "resume" in err
    rc, _ = start_and_stop(signal.SIGKILL, resumed.read_bytes().count(b"\n") + 200)
    assert rc == -signal.SIGKILL
    partial = resumed.read_bytes().count(b"\n")
    assert 400 <= partial < n
    finish = epsvec(*gen, "--out", resumed)
    assert "resuming" in finish.stderr

    straight = tmp_path / "straight.jsonl"
    epsvec(*gen, "--out", straight)
    assert resumed.read_text() == straight.read_text(), "resumed output equals one uninterrupted run"
    assert len(lines(straight)) == n and [r["index"] for r in lines(straight)] == list(range(n))

    other = epsvec(*gen, "--out", resumed, "--temperature", 0.5, check_rc=cli.EXIT_USAGE)
    assert "other settings (temperature)" in other.stderr and "--overwrite" in other.stderr


def test_exit_codes_and_messages(private_jsonl, tiny_models, tmp_path):
    model = ["--model", tiny_models["llama"], "--no-progress"]
    base = ["synthesize", "--n", 2, "--out", tmp_path / "x", *model]
    r = epsvec(*base, tmp_path / "missing.jsonl", "--eps", 4, check_rc=cli.EXIT_USAGE)
    assert "no such file" in r.stderr
    r = epsvec(*base, private_jsonl, "--eps", 4, check_rc=cli.EXIT_USAGE)
    assert "no column 'text'" in r.stderr and "review" in r.stderr
    r = epsvec(*base, private_jsonl, "--text-column", "review", "--eps", -1, check_rc=cli.EXIT_PRIVACY)
    assert "eps" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": \n')
    r = epsvec(*base, bad, "--eps", 4, check_rc=cli.EXIT_USAGE)
    assert "line 2" in r.stderr
    r = epsvec("info", tmp_path / "nowhere", check_rc=cli.EXIT_FILE)
    assert "epsvec: error" in r.stderr
    corrupt = tmp_path / "v.safetensors"
    corrupt.write_bytes(b"garbage")
    r = epsvec("generate", corrupt, "--n", 1, "--out", tmp_path / "o.jsonl", *model, check_rc=cli.EXIT_FILE)
    assert "Traceback" not in r.stderr
    assert epsvec(check_rc=cli.EXIT_USAGE).stdout.startswith("usage")


def test_private_shots_from_a_public_file_and_multi_line(private_jsonl, tiny_models, tmp_path):
    """--shot-candidates: the records vote over a public file's texts; --multi-line is saved with the vector."""
    public = tmp_path / "public.jsonl"
    public.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["fun plot", "dull scene", "great actor"]))
    release = tmp_path / "release"
    epsvec("extract", private_jsonl, "--text-column", "review", "--label-column", "stars", "--classes", "neg,pos",
           "--eps", 2, "--out", release, "--model", tiny_models["llama"], "--max-new-tokens", 6, "--fixed-shots",
           "private", "--shot-candidates", public, "--multi-line", "--no-progress")
    for vector in (release / "vectors").iterdir():
        about = json.loads(epsvec("info", vector).stdout)
        assert set(about["prompt"]["fixed_shots"]) <= {"fun plot", "dull scene", "great actor"}
        assert about["prompt"]["format"]["single_line"] is False


def test_info_describes_releases_vectors_and_models(private_jsonl, tiny_models, tmp_path):
    release = tmp_path / "release"
    epsvec("extract", private_jsonl, "--text-column", "review", "--label-column", "stars", "--classes", "neg,pos",
           "--eps", 2,
           "--out", release, "--model", tiny_models["llama"], "--max-new-tokens", 6, "--fixed-shots", "synthetic",
           "--no-progress")
    about = json.loads(epsvec("info", release).stdout)
    assert about["classes"] == ["neg", "pos"] and about["privacy"]["guarantee"]["eps"] == 2.0
    vector = next((release / "vectors").iterdir())
    about = json.loads(epsvec("info", vector).stdout)
    assert about["layers"] == [1, 2] and about["prompt"]["fixed_shots"]
    assert about["privacy"]["eps"] == pytest.approx(1.75), "the release's length histogram spent eps / 8"
    assert about["prompt"]["format"]["name"] == "raw", "no chat template: raw text"
    about = json.loads(epsvec("info", tiny_models["llama"]).stdout)
    assert about["num_layers"] == 3 and about["architecture"] == "LlamaForCausalLM"
    assert about["prompt_format"] == "raw"
    r = epsvec("extract", private_jsonl, "--text-column", "review", "--eps", 2, "--out", tmp_path / "chat",
               "--model", tiny_models["llama"], "--prompt-format", "chat", check_rc=cli.EXIT_USAGE)
    assert "no chat template" in r.stderr and not (tmp_path / "chat").exists()
