"""What 8-bit activations cost in accuracy: for each GGUF model, next-token
distributions computed as generation computes them (one decoding step per
token, ``Model.logits(stepwise=True)``) from the file's blocks with
``activations="int8"`` and ``"float32"`` (exact), against the
same file dequantised to float32 at load (the reference path), on real text
(Rotten Tomatoes snippets and BBC news openings); and llama.cpp's logits for
the same token ids (llama-cpp-python, when installed: it quantizes
activations the same way). Reports top-1 agreement and the KL divergence
KL(reference || path) in nats per token.

    python benches/gguf_numerics.py                      # the four named models
    python benches/gguf_numerics.py --model qwen2.5-coder-1.5b-instruct --texts 16 --paths int8,llama.cpp
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _harness import machine  # noqa: E402

PATHS = ("int8", "float32", "llama.cpp")
MODELS = ("smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")


def texts(count: int) -> list[str]:
    from epsvec import corpora

    reviews, _ = corpora.load("rotten_tomatoes")
    news, _ = corpora.load("bbc_news")
    half = count // 2
    return reviews[:half] + [" ".join(t.split()[:60]) for t in news[: count - half]]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def compare(reference: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float, float]:
    """Top-1 agreement, mean and 99th-percentile KL(reference || got) over all positions."""
    ref, new = np.concatenate(reference), np.concatenate(got)
    agree = float((ref.argmax(-1) == new.argmax(-1)).mean())
    p, q = log_softmax(ref), log_softmax(new)
    kl = (np.exp(p) * (p - q)).sum(-1)
    return agree, float(kl.mean()), float(np.quantile(kl, 0.99))


def formats(path: str) -> str:
    from gguf import GGUFReader

    weights = Counter()
    for t in GGUFReader(path).tensors:
        if len(t.shape) > 1:
            weights[t.tensor_type.name] += int(t.n_elements)
    total = sum(weights.values())
    return ", ".join(f"{name} {n / total:.0%}" for name, n in weights.most_common())


def llama_cpp_logits(path: str, ids: list[list[int]]) -> list[np.ndarray]:
    from llama_cpp import Llama

    llm = Llama(path, n_threads=os.cpu_count(), n_ctx=512, logits_all=True, verbose=False)
    out = []
    for text in ids:
        llm.reset()
        llm.eval(text)
        out.append(np.array(llm.scores[: len(text)], dtype=np.float32))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="a named model or .gguf path (repeatable)")
    parser.add_argument("--texts", type=int, default=8)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated, from " + ", ".join(PATHS))
    args = parser.parse_args()
    import epsvec

    sample = texts(args.texts)
    print(f"Machine: {machine()}")
    print(f"{len(sample)} texts; KL(reference || path) in nats per token; reference: the file dequantised to float32\n")
    print("| GGUF file (weight types) | tokens | path | top-1 agreement | mean KL | 99th pct KL |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.model or MODELS:
        try:
            reference = epsvec.load_model(name, device="cpu", dtype="float32")
        except epsvec.errors.ModelLoadError as e:
            print(f"| {name} | skipped: {e} |")
            continue
        want = reference.logits(sample, stepwise=True)
        tokens = sum(len(w) for w in want)
        ids, path = reference.tokenize(sample), reference.path
        label = f"{name} ({formats(path)})"
        del reference
        for kind in args.paths.split(","):
            if kind == "llama.cpp":
                got, what = llama_cpp_logits(path, ids), "llama.cpp"
            else:
                model = epsvec.load_model(name, device="cpu", activations=kind)
                got, what = model.logits(sample, stepwise=True), f"epsvec blocks, {kind} activations"
                del model
            agree, kl, kl99 = compare(want, got)
            print(f"| {label} | {tokens} | {what} | {agree:.4f} | {kl:.2e} | {kl99:.2e} |", flush=True)


if __name__ == "__main__":
    main()
