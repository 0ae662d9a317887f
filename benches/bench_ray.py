"""Ray scaling on this machine: extraction (records read, per-record terms)
and steered generation, in-process against a local Ray cluster with 1 and 2
actors. Embedded SmolLM2-135M on CPU, Rotten Tomatoes snippets, 4 layers,
30 new tokens per sample. In-process runs libtorch on every core; each
actor gets one core and one thread. Wall times include the actors' start
and model load, one run each.

    python benches/bench_ray.py [--records 200] [--samples 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import ray
    import ray.data
    import torch

    import epsvec
    from epsvec import distributed
    from epsvec.distributed import RayConfig
    from epsvec.seeds import derive_seed

    texts, _ = epsvec.corpora.load("rotten_tomatoes")
    texts = texts[: args.records]
    model = epsvec.load_model(device="cpu")
    kw = dict(eps=4, model=model, num_negatives=16, layers=[14, 15, 16, 17], progress=False, seed=0)
    vector = epsvec.extract(texts[:20], **kw)
    from epsvec.synthesis import ClassPlan, generate_for_class

    plan = ClassPlan.from_vector(vector)
    sampling = dict(strength=0.06, temperature=1.0, top_p=1.0, max_new_tokens=30)
    rows = []

    def timed(name, fn):
        start = time.perf_counter()
        fn()
        rows.append((name, time.perf_counter() - start))

    timed("extract, in-process", lambda: epsvec.extract(texts, **kw))
    timed("generate, in-process", lambda: generate_for_class(model, plan, range(args.samples), seed=1,
                                                             batch_size=16, **sampling))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ds = ray.data.from_items([{"text": t} for t in texts])
    for workers in (1, 2):
        config = RayConfig(workers=workers, batch_size=25, threads=1)
        timed(f"extract, Ray, {workers} actor(s)", lambda: epsvec.extract(ds, ray=config, **kw))
        gen_config = RayConfig(workers=workers, batch_size=1, threads=1)
        timed(f"generate, Ray, {workers} actor(s)", lambda: distributed.generate(
            [plan], args.samples, model, gen_config, seeds=[derive_seed(1, "samples")], sampling=sampling,
            batch_size=16))
    ray.shutdown()
    print(f"machine: {machine()} (in-process: {torch.get_num_threads()} threads)")
    print(f"{args.records} records (extract), {args.samples} samples of 30 tokens (generate); seconds, one run\n")
    print("| run | seconds |\n| --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
