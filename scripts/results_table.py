"""The results table (#28): corpora x models x methods x seeds, resumable.

    python scripts/results_table.py run --models smollm2-135m-instruct --seeds 0
    python scripts/results_table.py peer --models qwen2.5-coder-0.5b-instruct --seeds 0
    python scripts/results_table.py show          # the markdown tables, mean ± std over seeds

`run` appends one JSON line per finished run to ``results/table.jsonl``
and skips the runs already there, so the grid (about 15 hours on 2 CPU
cores) fills over several sessions. Protocol, as in the fidelity issue's
check: per class 200 private and 200 held-out records (disjoint, a fixed
split per corpus), 100 samples per class, each model's own recipe and
`synthesize`'s defaults otherwise, a token budget per corpus that covers
its lengths; pooled MAUVE (all classes at once, all-MiniLM-L6-v2, k-means
seeds 0-2) of the samples against the held-out records cut to that budget.
Methods: zero-shot and fixed-shot prompting (unsteered, the shots written
by the model itself), and EPSVec at eps 1, 4 and inf (one extraction for
the three; each is charged a third of its wall time).

`peer` runs InvisibleInk (`scripts/peer_invink.py`) at eps 4 on the same
records and weights, and EPSVec at eps 4 with as many samples per class as
the peer could make (MAUVE depends on the count), into ``results/peer.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import epsvec
from epsvec import metrics

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "table.jsonl"
PEER_OUT = ROOT / "results" / "peer.jsonl"
PER_CLASS, N_PER_CLASS = 200, 100
MODELS = ("smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
# Kind, classes (None: one class) and token budget of each corpus.
CORPORA = {
    "rotten_tomatoes": ("short reviews", ("fresh", "rotten"), 48),
    "bbc_news": ("news", ("business", "sports"), 128),
    "plot_synopses": ("long narratives", None, 160),
    "sms_spam": ("short messages", ("ham", "spam"), 48),
}
EPS = (1, 4, math.inf)
METHODS = ("zero-shot", "fixed-shot") + tuple(f"EPSVec eps={e}" for e in EPS)


def split(corpus: str) -> tuple[dict, dict]:
    """Private and held-out records per class: disjoint, fixed per corpus."""
    texts, labels = epsvec.corpora.load(corpus)
    classes = CORPORA[corpus][1] or (None,)
    rng = np.random.default_rng(1234)
    private, held_out = {}, {}
    for c in classes:
        mine = [t for t, label in zip(texts, labels) if c is None or label == c]
        order = rng.permutation(len(mine))
        private[c] = [mine[i] for i in order[:PER_CLASS]]
        held_out[c] = [mine[i] for i in order[PER_CLASS:2 * PER_CLASS]]
    return private, held_out


def flatten(by_class: dict) -> tuple[list[str], list]:
    return [t for c in by_class for t in by_class[c]], [c for c in by_class for _ in by_class[c]]


def timed_synthesize(model, corpus: str, private: dict, seed: int, n: int = N_PER_CLASS, **options):
    """``synthesize``'s result on a corpus's private records, and its wall seconds."""
    texts, labels = flatten(private)
    labelled = None not in private
    start = time.time()
    out = epsvec.synthesize(texts, n, labels=labels if labelled else None, classes=list(private) if labelled else None,
                            model=model, domain=epsvec.corpora.DOMAINS[corpus], max_new_tokens=CORPORA[corpus][2],
                            seed=seed, progress=False, **options)
    return out, time.time() - start


def runs_for(model, corpus: str, private: dict, seed: int) -> dict[str, tuple[list[str], float]]:
    """Each method's samples and wall seconds, for one corpus's private records and a seed."""
    def timed(**options):
        return timed_synthesize(model, corpus, private, seed, **options)

    out = {}
    for name, options in (("zero-shot", dict(method="zero_shot", eps=4)),
                          ("fixed-shot", dict(method="fixed_shot", eps=4, fixed_shots="synthetic"))):
        result, wall = timed(**options)
        out[name] = (result.texts, wall)
    finite = [1e6 if e == math.inf else e for e in EPS]
    sweep, wall = timed(eps=finite)
    for e, f in zip(EPS, finite):
        out[f"EPSVec eps={e}"] = (sweep[f].texts, wall / len(EPS))
    return out


def peer_runs_for(model, corpus: str, private: dict, seed: int) -> dict[str, tuple[list[str], float]]:
    """InvisibleInk's samples at eps 4, and EPSVec's at eps 4 with as many per class."""
    import peer_invink

    # its own wall time leaves out the one-off conversion of the weights for transformers
    texts, _, cost = peer_invink.synthesize(private, N_PER_CLASS, 4, 1e-5, epsvec.corpora.DOMAINS[corpus],
                                            CORPORA[corpus][2], seed=seed, prompts=peer_invink.SHORT_PROMPTS,
                                            gguf=model.path)
    ours, wall = timed_synthesize(model, corpus, private, seed, n=len(texts) // len(private), eps=4)
    return {"InvisibleInk eps=4": (texts, cost["wall_s"]), "EPSVec eps=4, as many samples": (ours.texts, wall)}


def rows(path: Path = OUT) -> list[dict]:
    """The finished runs."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def run(models: list[str], corpora: list[str], seeds: list[int], methods=runs_for, out: Path = OUT) -> None:
    """Each model, corpus and seed not yet in ``out``: the samples of ``methods``
    (:func:`runs_for` or :func:`peer_runs_for`) scored and appended."""
    out.parent.mkdir(exist_ok=True)
    finished = {(r["corpus"], r["model"], r["seed"]) for r in rows(out)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    for name in models:
        model = None
        for corpus in corpora:
            for seed in seeds:
                if (corpus, name, seed) in finished:
                    continue
                model = model or epsvec.load_model(name)
                private, held_out = split(corpus)
                budget = CORPORA[corpus][2]
                real = [t for c in held_out for t in metrics.truncate(held_out[c], model, budget)]
                real_words = float(np.mean([len(t.split()) for t in real]))
                lines = []
                for method, (texts, wall) in methods(model, corpus, private, seed).items():
                    mauve = metrics.mauve(real, texts, seeds=(0, 1, 2))
                    lines.append(dict(corpus=corpus, model=name, seed=seed, method=method,
                                      pooled_mauve=round(mauve.mean, 4), mauve_std=round(mauve.std, 4),
                                      words=round(float(np.mean([len(t.split()) for t in texts])), 1),
                                      real_words=round(real_words, 1), samples=len(texts), wall_s=round(wall, 1),
                                      max_new_tokens=budget, machine=platform.processor() or platform.machine(),
                                      cpu=_cpu(), commit=commit))
                with out.open("a") as f:  # a corpus and seed lands whole, or not at all
                    f.writelines(json.dumps(line) + "\n" for line in lines)
                print(f"{name} / {corpus} / seed {seed}: "
                      + ", ".join(f"{r['method']} {r['pooled_mauve']:.3f}" for r in lines), flush=True)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


PEER_METHODS = ("InvisibleInk eps=4", "EPSVec eps=4, as many samples")


def cells(done: list[dict], methods) -> list[tuple[str, str, str, dict]]:
    """``(corpus, kind, model, {method: its rows})`` of each corpus and model with results."""
    out = []
    for corpus, (kind, _, _) in CORPORA.items():
        for model in MODELS:
            cell = {m: [r for r in done if (r["corpus"], r["model"], r["method"]) == (corpus, model, m)]
                    for m in methods}
            if any(cell.values()):
                out.append((corpus, kind, model, cell))
    return out


def show() -> None:
    done = rows()
    if not done:
        raise SystemExit(f"no results yet in {OUT}: python scripts/results_table.py run")
    print("| corpus (kind) | model | " + " | ".join(METHODS) + " | seeds | words / real | wall s (EPSVec eps=4) |")
    print("| --- | --- | " + " | ".join("---" for _ in METHODS) + " | --- | --- | --- |")
    for corpus, kind, model, cell in cells(done, METHODS):
        scores = [_mean_std([r["pooled_mauve"] for r in cell[m]]) for m in METHODS]
        ours = cell["EPSVec eps=4"]
        words = f"{np.mean([r['words'] for r in ours]):.0f} / {ours[0]['real_words']:.0f}" if ours else ""
        wall = f"{np.mean([r['wall_s'] for r in ours]):.0f}" if ours else ""
        seeds = len({r["seed"] for m in METHODS for r in cell[m]})
        print(f"| {corpus} ({kind}) | {model} | " + " | ".join(scores) + f" | {seeds} | {words} | {wall} |")
    peer = rows(PEER_OUT)
    if peer:
        print("\n| corpus (kind) | model | " + " | ".join(PEER_METHODS)
              + " | samples | seeds | words (peer / EPSVec / real) | wall s (peer / EPSVec) |")
        print("| --- | --- | " + " | ".join("---" for _ in PEER_METHODS) + " | --- | --- | --- | --- |")
        for corpus, kind, model, cell in cells(peer, PEER_METHODS):
            theirs, ours = cell[PEER_METHODS[0]], cell[PEER_METHODS[1]]
            scores = [_mean_std([r["pooled_mauve"] for r in cell[m]]) for m in PEER_METHODS]
            mean = lambda rs, key: f"{np.mean([r[key] for r in rs]):.0f}"
            print(f"| {corpus} ({kind}) | {model} | " + " | ".join(scores)
                  + f" | {mean(theirs, 'samples')} | {len(theirs)} | {mean(theirs, 'words')} / {mean(ours, 'words')}"
                  + f" / {theirs[0]['real_words']:.0f} | {mean(theirs, 'wall_s')} / {mean(ours, 'wall_s')} |")


def _mean_std(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("run", "peer"):
        grid = sub.add_parser(command)
        grid.add_argument("--models", default=",".join(MODELS))
        grid.add_argument("--corpora", default=",".join(CORPORA))
        grid.add_argument("--seeds", default="0,1,2")
    sub.add_parser("show")
    args = parser.parse_args()
    if args.command == "show":
        return show()
    grid = (args.models.split(","), args.corpora.split(","), [int(s) for s in args.seeds.split(",")])
    if args.command == "run":
        run(*grid)
    else:
        sys.path.insert(0, str(ROOT / "scripts"))  # peer_invink
        run(*grid, methods=peer_runs_for, out=PEER_OUT)


if __name__ == "__main__":
    main()
