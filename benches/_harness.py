"""Side-by-side benchmark harness: each engine runs in its own subprocess
(so peak memory is its own), rounds alternate between engines (so machine
noise hits both), and the table reports medians and the ratio."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_main(run) -> None:
    """In a worker: `run(engine, reps)` returns {metric: [values]}; print it with peak RSS."""
    engine, reps = sys.argv[2], int(sys.argv[3])
    results = run(engine, reps)
    results["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(results))


def side_by_side(script: str, doc: str, runners: dict, default_reps: int):
    """In a worker process, run one engine and print its results (returns
    None); otherwise run every engine's workers, rounds alternating, and
    return ``(results per engine, args)``."""
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(lambda engine, reps: runners[engine](reps))
        return None
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reps", type=int, default=default_reps)
    args = parser.parse_args()
    return run_workers(script, list(runners), args.rounds, args.reps), args


def run_workers(script: str, engines: list[str], rounds: int, reps: int) -> dict[str, dict[str, list[float]]]:
    merged: dict[str, dict[str, list[float]]] = {e: {} for e in engines}
    for _ in range(rounds):
        for engine in engines:
            done = subprocess.run([sys.executable, script, "--worker", engine, str(reps)], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"the {engine} worker failed:\n{done.stderr[-3000:]}")
            out = done.stdout
            line = next(l for l in out.splitlines() if l.startswith("RESULT "))
            for key, value in json.loads(line[7:]).items():
                merged[engine].setdefault(key, []).extend(value if isinstance(value, list) else [value])
    return merged


def median(values: list[float]) -> float:
    return statistics.median(values)


def add_to_last_position(vector):
    """A transformers forward hook that steers as epsvec's ``positions="last"``:
    the vector added to a block's output at the last position of every pass."""
    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden[:, -1, :] += vector
        return output
    return hook
