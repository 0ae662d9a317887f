"""InvisibleInk (Vinod et al., NeurIPS 2025; PyPI `invink` 0.1.0) as a peer:
DP decoding by clipped private-minus-public logits, run on the same model,
records and (eps, delta) as epsvec.

Each InvisibleInk sample reads its own batch of `batch_size - 1` private
records at every token (disjoint batches: parallel composition), so 200
records give at most 200 // 7 = 28 samples at its default batch of 8, and
its per-token share of the budget shrinks as more tokens are budgeted. EPSVec reads each record
once, whatever the number or length of samples.

    pip install --no-deps invink==0.1.0        # its other needs come with the test extra
    PEER_CORPUS=amazon python scripts/peer_invink.py   # a corpus of scripts/tune.py, eps 4

invink 0.1.0's utils.py has an f-string that parses only on Python >= 3.12;
on older Pythons `load_invink` imports a copy with that one line rewritten.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np

FSTRING = re.compile(r'\{"all devices" if device_map == "auto" else device_map\}')


def load_invink():
    """The `invink` package, importable on Python 3.10/3.11 too."""
    spec = importlib.util.find_spec("invink")
    if spec is None:
        sys.exit("pip install --no-deps invink==0.1.0")
    try:
        return importlib.import_module("invink")
    except SyntaxError:
        source = list(spec.submodule_search_locations)[0]
        copy = os.path.join(tempfile.mkdtemp(prefix="invink-"), "invink")
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        utils = os.path.join(copy, "utils.py")
        text = open(utils, encoding="utf-8").read()
        with open(utils, "w", encoding="utf-8") as f:
            f.write(FSTRING.sub("{'all devices' if device_map == 'auto' else device_map}", text))
        sys.modules.pop("invink", None)
        sys.path.insert(0, os.path.dirname(copy))
        return importlib.import_module("invink")


def model_as_hf(gguf: str | None = None) -> str:
    """A GGUF file (the embedded SmolLM2-135M-Instruct by default),
    dequantised by transformers into an HF folder (what InvisibleInk loads):
    the same weights epsvec runs."""
    if gguf is None:
        from epsvec._default_model import default_model_path
        gguf = str(default_model_path())
    folder, file = os.path.dirname(gguf), os.path.basename(gguf)
    folder_out = os.path.expanduser(f"~/.cache/epsvec/{os.path.splitext(file)[0]}-hf")
    if not os.path.isdir(folder_out):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
        # transformers refuses to save a model loaded from GGUF: copy its (dequantised) weights into a plain one.
        loaded.config.__dict__.pop("quantization_config", None)
        plain = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        plain.save_pretrained(folder_out)
        AutoTokenizer.from_pretrained(folder, gguf_file=file).save_pretrained(folder_out)
    return folder_out


# invink's own prompts are long instructions that the 135M model answers with code; these
# short ones, in its two slots ({} = the dataset description, then a private record), do not.
SHORT_PROMPTS = {"pub_prompt": "Write one sentence from {}. Reply with the sentence only.",
                 "prv_prompt": "Write one sentence from {}, in the style of this example: {}\nReply with the sentence only."}


def synthesize(private: dict, n: int, eps: float, delta: float, domain: str, max_new_tokens: int,
               batch_size: int = 8, seed: int = 0, prompts: dict | None = None,
               gguf: str | None = None) -> tuple[list[str], list, dict]:
    """InvisibleInk samples per class (at most n, and at most
    records // (batch_size - 1)) from a GGUF model (:func:`model_as_hf`),
    their labels, and its costs; ``prompts`` replaces invink's
    ``pub_prompt``/``prv_prompt``."""
    invink = load_invink()
    path = model_as_hf(gguf)
    texts, labels, start = [], [], time.time()
    for label, records in private.items():
        num = min(n, len(records) // (batch_size - 1))
        what = domain if label is None else f"{domain} (label: {label})"
        out = invink.generate(records, path, dataset_desc=what, epsilon=eps, delta=delta, batch_size=batch_size,
                              num=num, max_toks=max_new_tokens, dtype="float32", device_map=-1,
                              allow_download=False, random_seed=seed, **(prompts or {}))
        texts += out.texts
        labels += [label] * len(out.texts)
    cost = {"wall_s": round(time.time() - start), "records_per_sample": batch_size - 1,
            "forward_rows_per_token": batch_size}
    return texts, labels, cost


def main() -> None:
    """invink (its prompts, and short ones) against epsvec's defaults and
    zero-shot, all at invink's sample count (MAUVE depends on it)."""
    sys.path.insert(0, os.path.dirname(__file__))
    import tune
    import epsvec
    from epsvec import metrics

    name = os.environ.get("PEER_CORPUS", "amazon")
    eps, delta, max_new_tokens = tune.PROTOCOL["eps"], 1e-5, tune.PROTOCOL["max_new_tokens"]
    domain, private, held_out, _ = tune.corpus(name)
    real = tune.flatten(held_out)[0]

    def row(method: str, texts: list[str], cost) -> None:
        score = metrics.mauve(real, texts, seeds=(0, 1, 2)).mean
        print(f"{name} {method:22s} MAUVE {score:.3f}  {len(texts)} samples, "
              f"{np.mean([len(t.split()) for t in texts]):.0f} words, {cost}", flush=True)

    count = 0
    for which, prompts in (("invink, its prompts", None), ("invink, short prompts", SHORT_PROMPTS)):
        texts, _, cost = synthesize(private, tune.N, eps, delta, domain, max_new_tokens, prompts=prompts)
        count = len(texts) // len(private)
        row(which, texts, cost)
    records, labels = tune.flatten(private)
    for method in ("zero_shot", "epsvec"):
        start = time.time()
        out = epsvec.synthesize(records, count, labels=labels, classes=list(private), eps=eps, delta=delta,
                                domain=domain, max_new_tokens=max_new_tokens, method=method, seed=0, progress=False)
        row(f"epsvec {method}", out.texts, {"wall_s": round(time.time() - start), "records_per_sample": "all, once"})


if __name__ == "__main__":
    main()
