"""Steered generation: epsvec vs transformers `generate` with an equivalent
forward hook, same model (the embedded SmolLM2-135M, float32, CPU), prompts
and settings: batch 16, 64 new tokens, sampling at temperature 1, steering
on 4 layers at the last position.

    python benches/bench_generate.py [--rounds 2] [--reps 3]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _harness import machine, median, side_by_side  # noqa: E402

BATCH, NEW_TOKENS, LAYERS, STRENGTH = 16, 64, (14, 15, 16, 17), 4.0
PROMPTS = [
    "The film opens with", "A quiet, moving drama about", "The plot is", "Critics agreed that",
    "It's the kind of movie that", "The lead actor", "Halfway through, the story", "The soundtrack",
    "Visually, the film is", "The director's last movie", "This sequel", "The script never",
    "Fans of the genre will", "The ending", "Despite its budget,", "At two hours long,",
]


def vectors(hidden: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for layer in LAYERS:
        v = rng.standard_normal(hidden).astype(np.float32)
        out[layer] = v / np.linalg.norm(v)
    return out


def run_epsvec(reps: int) -> dict[str, list[float]]:
    import epsvec

    model = epsvec.load_model(device="cpu")
    steer = vectors(model.config.hidden_size)
    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, temperature=1.0, batch_size=BATCH)
    model.generate(PROMPTS, **{**kw, "max_new_tokens": 4, "min_new_tokens": 0})  # warm-up
    results: dict[str, list[float]] = {"plain": [], "steered": []}
    for rep in range(reps):
        for name, extra in (("plain", {}), ("steered", {"steer": steer, "strength": STRENGTH})):
            start = time.perf_counter()
            out = model.generate(PROMPTS, seed=rep, return_ids=True, **kw, **extra)
            tokens = sum(len(g.token_ids) for g in out)
            results[name].append(tokens / (time.perf_counter() - start))
    return results


def run_transformers(reps: int) -> dict[str, list[float]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from epsvec._default_model import default_model_path

    path = default_model_path()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tok.padding_side = "left"
    tok.pad_token = tok.eos_token
    inputs = tok(PROMPTS, return_tensors="pt", padding=True)
    steer = {l: torch.from_numpy(v * STRENGTH) for l, v in vectors(model.config.hidden_size).items()}

    def hook(vector):
        def add_last(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            hidden[:, -1, :] += vector
            return output
        return add_last

    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=True, temperature=1.0, top_k=0,
              top_p=1.0, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        model.generate(**inputs, **{**kw, "max_new_tokens": 4, "min_new_tokens": 0})
    results: dict[str, list[float]] = {"plain": [], "steered": []}
    for rep in range(reps):
        for name in ("plain", "steered"):
            handles = [model.model.layers[l].register_forward_hook(hook(v)) for l, v in steer.items()] if name == "steered" else []
            torch.manual_seed(rep)
            start = time.perf_counter()
            with torch.no_grad():
                out = model.generate(**inputs, **kw)
            elapsed = time.perf_counter() - start
            for h in handles:
                h.remove()
            results[name].append((out.shape[1] - inputs["input_ids"].shape[1]) * out.shape[0] / elapsed)
    return results


def main() -> None:
    outcome = side_by_side(__file__, __doc__, {"epsvec": run_epsvec, "transformers": run_transformers}, 3)
    if outcome is None:
        return
    r, args = outcome
    e, t = r["epsvec"], r["transformers"]
    overhead = lambda x: 100 * (median(x["plain"]) / median(x["steered"]) - 1)
    print(f"machine: {machine()}")
    print(f"SmolLM2-135M f32, batch {BATCH}, {NEW_TOKENS} new tokens, temperature 1, steering on {len(LAYERS)} layers; "
          f"medians of {args.rounds * args.reps} runs\n")
    print("| | epsvec | transformers | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| tokens/s, unsteered | {median(e['plain']):.1f} | {median(t['plain']):.1f} | {median(e['plain']) / median(t['plain']):.2f}x |")
    print(f"| tokens/s, steered | {median(e['steered']):.1f} | {median(t['steered']):.1f} | {median(e['steered']) / median(t['steered']):.2f}x |")
    print(f"| steering overhead | {overhead(e):+.1f}% | {overhead(t):+.1f}% | |")
    print(f"| peak RSS (MB) | {max(e['peak_rss_mb']):.0f} | {max(t['peak_rss_mb']):.0f} | |")


if __name__ == "__main__":
    main()
