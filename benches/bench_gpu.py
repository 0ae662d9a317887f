"""GPU generation and capture: epsvec vs transformers (`generate`, with an
equivalent forward hook for steering; for capture, a forward with all
hidden states, mean-pooled on the GPU) on one random-weight model of Llama-3.2-1B's shape in bfloat16,
built here with transformers (no download). 64 new tokens, sampling at
temperature 1 (and greedy at batch 1), steering on 4 layers at the last
position; batch 1, 16 and 64 of distinct short prompts, and 64 copies of a ~100-token fixed-shot
prompt (as `synthesize` draws them). Peak memory is the CUDA caching
allocator's, which the engine shares with torch in one process.

    python benches/bench_gpu.py [--rounds 2] [--reps 2]   (builds the model in $EPSVEC_BENCH_DIR)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _harness import add_to_last_position, median, side_by_side  # noqa: E402

MODEL_DIR = Path(os.environ.get("EPSVEC_BENCH_DIR", "/tmp/epsvec-bench-llama1b"))
NEW_TOKENS, LAYERS, STRENGTH = 64, (6, 7, 8, 9), 4.0
VOCAB = 128_256
WORDS = [f"w{i}" for i in range(VOCAB)]  # a word-level tokenizer over the whole vocabulary


def prompt(seed: int, length: int) -> str:
    return " ".join(WORDS[i] for i in np.random.default_rng(seed).integers(100, VOCAB, length))


SHORT = [prompt(i, 8) for i in range(64)]
FIXED_SHOT = prompt(1000, 100)
# (name, batch size, prompts, greedy): greedy at batch 1 shows what the sampler costs.
CASES = [("batch 1", 1, SHORT[:2], False), ("batch 1, greedy", 1, SHORT[:2], True), ("batch 16", 16, SHORT[:16], False),
         ("batch 64", 64, SHORT, False), ("batch 64, one fixed-shot prompt", 64, [FIXED_SHOT] * 64, False)]
CAPTURE = [prompt(2000 + i, 100) for i in range(256)]


def build_model() -> None:
    """Llama-3.2-1B's configuration with random bfloat16 weights, and a word-level tokenizer."""
    if (MODEL_DIR / "config.json").exists():
        return
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, max_position_embeddings=131072, rms_norm_eps=1e-5,
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=32.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=8192),
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(MODEL_DIR)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="w2"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="w0", eos_token="w1", pad_token="w1",
                            unk_token="w2").save_pretrained(MODEL_DIR)


def vectors(hidden: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    return {l: (v := rng.standard_normal(hidden).astype(np.float32)) / np.linalg.norm(v) for l in LAYERS}


def timed(results: dict, key: str, tokens_of, fn) -> None:
    import torch

    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    results.setdefault(key, []).append(tokens_of(out) / (time.perf_counter() - start))


def peak(results: dict) -> dict:
    import torch

    results["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return results


def run_epsvec(reps: int) -> dict[str, list[float]]:
    import torch  # noqa: F401  (the same CUDA allocator, for the peak)

    import epsvec

    model = epsvec.load_model(str(MODEL_DIR), device="cuda", dtype="bfloat16")
    steer = vectors(model.config.hidden_size)
    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, temperature=1.0, progress=False)
    results: dict[str, list[float]] = {}
    count = lambda out: sum(len(g.token_ids) for g in out)
    for rep in range(reps + 1):  # the first round warms up (allocator, kernels, host memory) and is dropped
        for case, batch, prompts, greedy in CASES:
            for name, extra in (("plain", {}), ("steered", {"steer": steer, "strength": STRENGTH})):
                temperature = 0.0 if greedy else 1.0
                timed(results, f"{case}, {name}", count, lambda: model.generate(
                    prompts, seed=rep, return_ids=True, batch_size=batch, **{**kw, "temperature": temperature},
                    **extra))
        tokens = sum(map(len, model.tokenize(CAPTURE)))
        timed(results, "capture", lambda _: tokens,
              lambda: model.hidden_states(CAPTURE, layers=list(range(16)), batch_size=16))
    return peak({k: v[1:] for k, v in results.items()})


def run_transformers(reps: int) -> dict[str, list[float]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.bfloat16).to("cuda").eval()
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    tok.padding_side = "left"
    steer = {l: torch.from_numpy(v * STRENGTH).to("cuda", torch.bfloat16)
             for l, v in vectors(model.config.hidden_size).items()}

    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, top_k=0, top_p=1.0, pad_token_id=tok.pad_token_id)

    def generate(prompts, batch, greedy):
        sampling = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=1.0)
        tokens = 0
        for i in range(0, len(prompts), batch):
            inputs = tok(prompts[i : i + batch], return_tensors="pt", padding=True).to("cuda")
            with torch.no_grad():
                out = model.generate(**inputs, **kw, **sampling)
            tokens += (out.shape[1] - inputs["input_ids"].shape[1]) * out.shape[0]
        return tokens

    def capture():
        tokens = 0
        for i in range(0, len(CAPTURE), 16):
            inputs = tok(CAPTURE[i : i + 16], return_tensors="pt", padding=True).to("cuda")
            with torch.no_grad():
                out = model.model(**inputs, output_hidden_states=True)
            mask = inputs["attention_mask"][..., None].float()  # mean pooling on the GPU, as epsvec does
            torch.stack([(h.float() * mask).sum(1) / mask.sum(1) for h in out.hidden_states[1:]], 1).cpu()
            tokens += int(inputs["attention_mask"].sum())
        return tokens

    results: dict[str, list[float]] = {}
    for rep in range(reps + 1):  # the first round warms up and is dropped
        for case, batch, prompts, greedy in CASES:
            for name in ("plain", "steered"):
                layers = model.model.layers
                handles = ([layers[l].register_forward_hook(add_to_last_position(v)) for l, v in steer.items()]
                           if name == "steered" else [])
                torch.manual_seed(rep)
                timed(results, f"{case}, {name}", lambda n: n, lambda: generate(prompts, batch, greedy))
                for h in handles:
                    h.remove()
        timed(results, "capture", lambda n: n, capture)
    return peak({k: v[1:] for k, v in results.items()})


def gpu() -> str:
    import torch

    p = torch.cuda.get_device_properties(0)
    return f"{p.name} ({p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}"


def main() -> None:
    if len(sys.argv) == 1 or sys.argv[1] != "--worker":
        build_model()
    outcome = side_by_side(__file__, __doc__, {"epsvec": run_epsvec, "transformers": run_transformers}, 2)
    if outcome is None:
        return
    r, args = outcome
    e, t = r["epsvec"], r["transformers"]
    lines = [f"machine: {gpu()}",
             f"random-weight Llama-3.2-1B shape, bfloat16, {NEW_TOKENS} new tokens, temperature 1, steering on "
             f"{len(LAYERS)} layers; tokens/s, medians of {args.rounds * args.reps} runs after a warm-up round", "",
             "| case | epsvec | transformers | ratio | epsvec steered | transformers steered | steering overhead |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for case, *_ in CASES:
        ep, tp = median(e[f"{case}, plain"]), median(t[f"{case}, plain"])
        es, ts = median(e[f"{case}, steered"]), median(t[f"{case}, steered"])
        lines.append(f"| {case} | {ep:.0f} | {tp:.0f} | {ep / tp:.2f}x | {es:.0f} | {ts:.0f} | "
                     f"{100 * (ep / es - 1):+.1f}% |")
    ec, tc = median(e["capture"]), median(t["capture"])
    lines.append(f"| capture (mean-pooled), 256 x 100 tokens, batch 16, all 16 layers | {ec:.0f} | {tc:.0f} | "
                 f"{ec / tc:.2f}x | | | |")
    lines.append(f"| peak GPU memory (MiB) | {max(e['peak_gpu_mb']):.0f} | {max(t['peak_gpu_mb']):.0f} | | | | |")
    print("\n".join(lines))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "bench_gpu.json").write_text(json.dumps(r))


if __name__ == "__main__":
    main()
