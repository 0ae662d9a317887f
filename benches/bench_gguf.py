"""Decoding from one GGUF file: epsvec computing from the file's blocks
(``dtype="auto"``, with the default ``activations="auto"``: 8-bit
activations for the K-quants, and with ``activations="int8"``: for every
type), epsvec's dequantised float32 path (``dtype="float32"``),
llama.cpp (llama-cpp-python) and transformers (float32, its GGUF loader),
each in its own process, rounds alternating. 64 new tokens sampled at
temperature 1 (end of text suppressed), batch 1 and 16, the same threads.
llama-cpp-python's high-level API decodes one sequence at a time, so
llama.cpp runs at batch 1 only.

    CMAKE_ARGS="-DGGML_NATIVE=ON" pip install llama-cpp-python==0.3.36   # once, 5-15 min
    # Where the CPU lists AMX but the system does not enable it (seen on an
    # Intel build machine), ggml's AMX kernels crash on prompts: build without
    # them, adding -DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'
    # and the same -DCMAKE_CXX_FLAGS.
    python benches/bench_gguf.py --model smollm2-135m-instruct   # or gemma-3-270m,
        # qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct, a .gguf path
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import machine, median, peak_rss_mb, run_workers, worker_main  # noqa: E402

NEW_TOKENS = 64
PROMPTS = [
    "The film opens with", "A quiet, moving drama about", "The plot is", "Critics agreed that",
    "It's the kind of movie that", "The lead actor", "Halfway through, the story", "The soundtrack",
    "Visually, the film is", "The director's last movie", "This sequel", "The script never",
    "Fans of the genre will", "The ending", "Despite its budget,", "At two hours long,",
]
BATCHES = (1, 16)
ENGINES = ("epsvec", "epsvec-int8", "epsvec-f32", "llama.cpp", "transformers")


def model_path() -> str:
    from epsvec._default_model import NAMED_MODELS

    name = os.environ["EPSVEC_BENCH_MODEL"]
    return str(NAMED_MODELS[name]()) if name in NAMED_MODELS else name


def threads() -> int:
    return int(os.environ["EPSVEC_BENCH_THREADS"])


def run_epsvec(reps: int, dtype: str, activations: str = "auto") -> dict[str, list[float]]:
    # libtorch's thread count, read at start-up (importing torch to set it would add its ~300 MB).
    os.environ["OMP_NUM_THREADS"] = str(threads())
    import epsvec

    model = epsvec.load_model(model_path(), device="cpu", dtype=dtype, activations=activations)
    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, temperature=1.0, top_p=1.0, progress=False)
    model.generate(PROMPTS[:1], **{**kw, "max_new_tokens": 4, "min_new_tokens": 0})  # warm-up
    results: dict[str, list[float]] = {}
    for batch in BATCHES:  # batch 1 first, so its peak memory is read before batch 16 raises it
        for rep in range(reps):
            start = time.perf_counter()
            out = model.generate(PROMPTS[:batch], seed=rep, return_ids=True, batch_size=batch, **kw)
            tokens = sum(len(g.token_ids) for g in out)
            results.setdefault(f"batch {batch}", []).append(tokens / (time.perf_counter() - start))
        results[f"peak RSS, batch {batch}"] = [peak_rss_mb()]
    return results


def run_llama_cpp(reps: int) -> dict[str, list[float]]:
    from llama_cpp import Llama

    llm = Llama(model_path(), n_threads=threads(), n_threads_batch=threads(), n_ctx=256, seed=0, verbose=False)
    no_end = {llm.token_eos(): -1e9}
    kw = dict(max_tokens=NEW_TOKENS, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, logit_bias=no_end)
    llm.create_completion(PROMPTS[0], **{**kw, "max_tokens": 4})  # warm-up
    results: dict[str, list[float]] = {}
    for rep in range(reps):
        llm.set_seed(rep)
        start = time.perf_counter()
        out = llm.create_completion(PROMPTS[0], **kw)
        results.setdefault("batch 1", []).append(out["usage"]["completion_tokens"] / (time.perf_counter() - start))
    results["peak RSS, batch 1"] = [peak_rss_mb()]
    return results


def run_transformers(reps: int) -> dict[str, list[float]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads())
    path = Path(model_path())
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=True, temperature=1.0, top_k=0,
              top_p=1.0, pad_token_id=tok.pad_token_id)
    results: dict[str, list[float]] = {}
    with torch.no_grad():
        model.generate(**tok(PROMPTS[:1], return_tensors="pt", padding=True), **{**kw, "max_new_tokens": 4,
                                                                                  "min_new_tokens": 0})
        for batch in BATCHES:
            for rep in range(reps):
                torch.manual_seed(rep)
                inputs = tok(PROMPTS[:batch], return_tensors="pt", padding=True)
                start = time.perf_counter()
                out = model.generate(**inputs, **kw)
                tokens = (out.shape[1] - inputs["input_ids"].shape[1]) * out.shape[0]
                results.setdefault(f"batch {batch}", []).append(tokens / (time.perf_counter() - start))
            results[f"peak RSS, batch {batch}"] = [peak_rss_mb()]
    return results


RUNNERS = {
    "epsvec": lambda reps: run_epsvec(reps, "auto"),
    "epsvec-int8": lambda reps: run_epsvec(reps, "auto", "int8"),
    "epsvec-f32": lambda reps: run_epsvec(reps, "float32"),
    "llama.cpp": run_llama_cpp,
    "transformers": run_transformers,
}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker_main(lambda engine, reps: RUNNERS[engine](reps))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a model name epsvec knows, or a .gguf path")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated, from " + ", ".join(ENGINES))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    engines = args.engines.split(",")
    os.environ.update(EPSVEC_BENCH_MODEL=args.model, EPSVEC_BENCH_THREADS=str(args.threads))
    r = run_workers(__file__, engines, args.rounds, args.reps)
    size = Path(model_path()).stat().st_size / 1e6
    print(f"machine: {machine()}; {args.threads} threads")
    print(f"{args.model} ({Path(model_path()).name}, {size:.0f} MB), {NEW_TOKENS} new tokens sampled at "
          f"temperature 1; tokens/s, medians of {args.rounds * args.reps} runs\n")
    # Peak RSS through load and batch 1 (what llama.cpp runs), then through batch 16 too.
    print("| engine | " + " | ".join(f"batch {b}" for b in BATCHES) + " | epsvec / engine, batch 1 | "
          + " | ".join(f"peak RSS to batch {b} (MB)" for b in BATCHES) + " |")
    print("| --- |" + " --- |" * (2 * len(BATCHES) + 1))
    ours = median(r["epsvec"]["batch 1"]) if "epsvec" in r else None
    for engine in engines:
        speeds = [median(r[engine][f"batch {b}"]) if f"batch {b}" in r[engine] else None for b in BATCHES]
        cells = [f"{s:.1f}" if s else "not run" for s in speeds]
        ratio = f"{ours / speeds[0]:.2f}x" if ours and speeds[0] else ""
        rss = [f"{max(r[engine][f'peak RSS, batch {b}']):.0f}" if f"peak RSS, batch {b}" in r[engine] else ""
               for b in BATCHES]
        print(f"| {engine} | " + " | ".join(cells) + f" | {ratio} | " + " | ".join(rss) + " |")


if __name__ == "__main__":
    main()
