"""Generation: epsvec vs transformers `generate` (with an equivalent forward
hook for steering), same model (the embedded SmolLM2-135M, float32, CPU),
prompts and settings: 64 new tokens, sampling at temperature 1, steering on
4 layers at the last position. Four cases: batch 1 and 16, short prompts
and a ~100-token fixed-shot prompt (at batch 16, 16 samples of it, as
`synthesize` draws them).

    python benches/bench_generate.py [--rounds 2] [--reps 2]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _harness import add_to_last_position, machine, median, side_by_side  # noqa: E402

NEW_TOKENS, LAYERS, STRENGTH = 64, (14, 15, 16, 17), 4.0
SHORT = [
    "The film opens with", "A quiet, moving drama about", "The plot is", "Critics agreed that",
    "It's the kind of movie that", "The lead actor", "Halfway through, the story", "The soundtrack",
    "Visually, the film is", "The director's last movie", "This sequel", "The script never",
    "Fans of the genre will", "The ending", "Despite its budget,", "At two hours long,",
]
FIXED_SHOT = (
    "Below are several diverse examples of movie reviews. Each example is human-written and enclosed between "
    "<begin> and </end> tags. Here are the examples:\n\n"
    "<begin>\nText: A tender, funny and wise film about growing old, with two lead performances that never "
    "strike a false note.\n</end>\n"
    "<begin>\nText: Dull, overlong and badly edited; the twist is visible from the first scene and the "
    "dialogue is worse.\n</end>\n<begin>\nText:"
)
# (name, batch size, prompts): batch 1 runs its prompts one after another.
CASES = [("batch 1, short", 1, SHORT[:2]), ("batch 1, fixed-shot", 1, [FIXED_SHOT]),
         ("batch 16, short", 16, SHORT), ("batch 16, fixed-shot", 16, [FIXED_SHOT] * 16)]


def vectors(hidden: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for layer in LAYERS:
        v = rng.standard_normal(hidden).astype(np.float32)
        out[layer] = v / np.linalg.norm(v)
    return out


def run_epsvec(reps: int) -> dict[str, list[float]]:
    import epsvec

    model = epsvec.load_model(device="cpu", dtype="float32")  # transformers runs the dequantised weights too
    steer = vectors(model.config.hidden_size)
    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, temperature=1.0, progress=False)
    model.generate(SHORT, **{**kw, "max_new_tokens": 4, "min_new_tokens": 0})  # warm-up
    results: dict[str, list[float]] = {}
    for rep in range(reps):
        for case, batch, prompts in CASES:
            for name, extra in (("plain", {}), ("steered", {"steer": steer, "strength": STRENGTH})):
                start = time.perf_counter()
                out = model.generate(prompts, seed=rep, return_ids=True, batch_size=batch, **kw, **extra)
                tokens = sum(len(g.token_ids) for g in out)
                results.setdefault(f"{case}, {name}", []).append(tokens / (time.perf_counter() - start))
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
    steer = {l: torch.from_numpy(v * STRENGTH) for l, v in vectors(model.config.hidden_size).items()}

    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=True, temperature=1.0, top_k=0,
              top_p=1.0, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        model.generate(**tok(SHORT, return_tensors="pt", padding=True), **{**kw, "max_new_tokens": 4, "min_new_tokens": 0})
    results: dict[str, list[float]] = {}
    for rep in range(reps):
        for case, batch, prompts in CASES:
            for name in ("plain", "steered"):
                layers = model.model.layers
                handles = ([layers[l].register_forward_hook(add_to_last_position(v)) for l, v in steer.items()]
                           if name == "steered" else [])
                torch.manual_seed(rep)
                tokens, start = 0, time.perf_counter()
                for i in range(0, len(prompts), batch):
                    inputs = tok(prompts[i : i + batch], return_tensors="pt", padding=True)
                    with torch.no_grad():
                        out = model.generate(**inputs, **kw)
                    tokens += (out.shape[1] - inputs["input_ids"].shape[1]) * out.shape[0]
                elapsed = time.perf_counter() - start
                for h in handles:
                    h.remove()
                results.setdefault(f"{case}, {name}", []).append(tokens / elapsed)
    return results


def main() -> None:
    outcome = side_by_side(__file__, __doc__, {"epsvec": run_epsvec, "transformers": run_transformers}, 2)
    if outcome is None:
        return
    r, args = outcome
    e, t = r["epsvec"], r["transformers"]
    print(f"machine: {machine()}")
    print(f"SmolLM2-135M f32, {NEW_TOKENS} new tokens, temperature 1, steering on {len(LAYERS)} layers; "
          f"tokens/s, medians of {args.rounds * args.reps} runs\n")
    print("| case | epsvec | transformers | ratio | epsvec steered | steering overhead |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case, _, _ in CASES:
        ep, tp, es = median(e[f"{case}, plain"]), median(t[f"{case}, plain"]), median(e[f"{case}, steered"])
        print(f"| {case} | {ep:.1f} | {tp:.1f} | {ep / tp:.2f}x | {es:.1f} | {100 * (ep / es - 1):+.1f}% |")
    print(f"| peak RSS (MB) | {max(e['peak_rss_mb']):.0f} | {max(t['peak_rss_mb']):.0f} | | | |")


if __name__ == "__main__":
    main()
