"""The results table (#28): corpora x models x methods x seeds, resumable.

    python scripts/results_table.py run --models smollm2-135m-instruct --seeds 0
    python scripts/results_table.py show          # the markdown table, mean ± std over seeds

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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

import epsvec
from epsvec import metrics

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "table.jsonl"
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


def runs_for(model, corpus: str, private: dict, seed: int) -> dict[str, tuple[list[str], float]]:
    """Each method's samples and wall seconds, for one corpus's private records and a seed."""
    texts, labels = flatten(private)
    labelled = None not in private
    common = dict(labels=labels if labelled else None, classes=list(private) if labelled else None, model=model,
                  domain=epsvec.corpora.DOMAINS[corpus], max_new_tokens=CORPORA[corpus][2], seed=seed,
                  progress=False)

    def timed(**options):
        start = time.time()
        out = epsvec.synthesize(texts, N_PER_CLASS, **{**common, **options})
        return out, time.time() - start

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


def rows() -> list[dict]:
    """The finished runs."""
    return [json.loads(line) for line in OUT.read_text().splitlines() if line.strip()] if OUT.exists() else []


def run(models: list[str], corpora: list[str], seeds: list[int]) -> None:
    OUT.parent.mkdir(exist_ok=True)
    finished = {(r["corpus"], r["model"], r["seed"]) for r in rows()}
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
                for method, (texts, wall) in runs_for(model, corpus, private, seed).items():
                    mauve = metrics.mauve(real, texts, seeds=(0, 1, 2))
                    lines.append(dict(corpus=corpus, model=name, seed=seed, method=method,
                                      pooled_mauve=round(mauve.mean, 4), mauve_std=round(mauve.std, 4),
                                      words=round(float(np.mean([len(t.split()) for t in texts])), 1),
                                      real_words=round(real_words, 1), samples=len(texts), wall_s=round(wall, 1),
                                      max_new_tokens=budget, machine=platform.processor() or platform.machine(),
                                      cpu=_cpu(), commit=commit))
                with OUT.open("a") as f:  # a corpus and seed lands whole, or not at all
                    f.writelines(json.dumps(line) + "\n" for line in lines)
                print(f"{name} / {corpus} / seed {seed}: "
                      + ", ".join(f"{r['method']} {r['pooled_mauve']:.3f}" for r in lines), flush=True)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def show() -> None:
    done = rows()
    if not done:
        raise SystemExit(f"no results yet in {OUT}: python scripts/results_table.py run")
    print("| corpus (kind) | model | " + " | ".join(METHODS) + " | seeds | words / real | wall s (EPSVec eps=4) |")
    print("| --- | --- | " + " | ".join("---" for _ in METHODS) + " | --- | --- | --- |")
    for corpus, (kind, _, _) in CORPORA.items():
        for model in MODELS:
            cell = {m: [r for r in done if (r["corpus"], r["model"], r["method"]) == (corpus, model, m)]
                    for m in METHODS}
            if not any(cell.values()):
                continue
            scores = [_mean_std([r["pooled_mauve"] for r in cell[m]]) for m in METHODS]
            ours = cell["EPSVec eps=4"]
            words = f"{np.mean([r['words'] for r in ours]):.0f} / {ours[0]['real_words']:.0f}" if ours else ""
            wall = f"{np.mean([r['wall_s'] for r in ours]):.0f}" if ours else ""
            seeds = len({r["seed"] for m in METHODS for r in cell[m]})
            print(f"| {corpus} ({kind}) | {model} | " + " | ".join(scores) + f" | {seeds} | {words} | {wall} |")


def _mean_std(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run")
    go.add_argument("--models", default=",".join(MODELS))
    go.add_argument("--corpora", default=",".join(CORPORA))
    go.add_argument("--seeds", default="0,1,2")
    sub.add_parser("show")
    args = parser.parse_args()
    if args.command == "run":
        run(args.models.split(","), args.corpora.split(","), [int(s) for s in args.seeds.split(",")])
    else:
        show()


if __name__ == "__main__":
    main()
