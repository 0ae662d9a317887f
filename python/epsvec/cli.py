"""The ``epsvec`` command: extract, generate, synthesize, evaluate, info.

Exit codes: 0 success; 2 bad usage or input (file, column, option);
3 impossible privacy parameters; 4 model, vector, release or output file
problems (missing, corrupt, another model, no CUDA, cannot write); 1 anything
else; 130 interrupted
(``generate`` and ``synthesize`` resume where they stopped when run again).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import sys

from . import __version__, corpora
from .errors import (CorruptFileError, DeviceError, EpsvecError, InvalidInputError, ModelLoadError, PrivacyError,
                     VectorModelMismatchError)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PRIVACY, EXIT_FILE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except PrivacyError as e:
        return _fail(e, EXIT_PRIVACY)
    except (ModelLoadError, CorruptFileError, VectorModelMismatchError, DeviceError, OSError) as e:
        return _fail(e, EXIT_FILE)
    except (InvalidInputError, TypeError) as e:
        return _fail(e, EXIT_USAGE)
    except EpsvecError as e:
        return _fail(e, EXIT_ERROR)


def _fail(error: Exception, code: int) -> int:
    print(f"epsvec: error: {error}", file=sys.stderr)
    return code


# ---------------------------------------------------------------- commands


def _synthesize(args) -> int:
    _check_sampling(args)  # before any budget is spent
    if args.evaluate_against and not os.path.isfile(args.evaluate_against):
        raise InvalidInputError(f"--evaluate-against: {args.evaluate_against} is not a file")
    release_dir = os.path.join(args.out, "release")
    out = os.path.join(args.out, "synthetic.jsonl")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InvalidInputError(f"{args.out} is a file; --out names a directory")
    _check_out(out, on_ray=False)
    plans, report = _private_release(args, release_dir)
    _generate_file(args, plans, out)
    rows = [json.loads(line) for line in open(out, encoding="utf-8")]
    for plan in plans:
        for row in [r for r in rows if r["label"] == plan.label][:2]:
            print(f"[{row['label']}] {' '.join(row['text'].split())[:160]}")
    print(f"\nsynthetic data: {out} ({len(rows)} samples)\nprivacy report: "
          f"{os.path.join(release_dir, 'privacy_report.json')} (eps = {report.eps:g}, delta = {report.delta:g})")
    if args.evaluate_against:
        from .data import read_table

        reference, reference_labels = read_table(args.evaluate_against, args.text_column, args.label_column)
        labelled = reference_labels is not None
        _report_evaluation([r["text"] for r in rows], [r["label"] for r in rows] if labelled else None, reference,
                           reference_labels, None, os.path.join(args.out, "evaluation"),
                           progress=not args.no_progress)
    return EXIT_OK


def _extract(args) -> int:
    args.method = "epsvec"
    plans, report = _private_release(args, args.out)
    print(f"release: {args.out} ({len(plans)} class vectors; eps = {report.eps:g}, delta = {report.delta:g}; "
          "report in privacy_report.json)")
    return EXIT_OK


def _generate(args) -> int:
    _check_sampling(args)
    from . import release
    from .synthesis import ClassPlan
    from .vector import DatasetVector

    plans = []
    for path in args.release:
        if os.path.isdir(path):
            plans += release.load(path)[0]
        else:
            plans.append(ClassPlan.from_vector(DatasetVector.load(path)))
    _generate_file(args, plans, args.out)
    print(f"synthetic data: {args.out}")
    return EXIT_OK


def _evaluate(args) -> int:
    from .data import read_table

    def table(path):
        return read_table(path, args.text_column, args.label_column) if path else (None, None)

    (synthetic, labels), (reference, reference_labels), (private, _) = map(table, (args.synthetic, args.reference,
                                                                                  args.private))
    _report_evaluation(synthetic, labels, reference, reference_labels, private, args.out, featurizer=args.featurizer,
                       ngram=args.ngram, progress=not args.no_progress)
    return EXIT_OK


def _report_evaluation(synthetic, labels, reference, reference_labels, private, out: str, **options) -> None:
    """Evaluate, save to ``out`` and print the public figures; leakage figures stay in their curator-only file."""
    from .evaluation import LEAKAGE_NAME, evaluate

    report = evaluate(synthetic, reference, private, labels=labels, reference_labels=reference_labels, **options)
    report.save(out)
    f = report.fidelity
    print(f"MAUVE, pooled: {f['pooled']['mean']:.3f} ± {f['pooled']['std']:.3f} ({report.counts['synthetic']} "
          f"synthetic vs {report.counts['reference']} reference texts)")
    for label, score in (f["per_class"] or {}).items():
        print(f"MAUVE, {label}: {score['mean']:.3f} ± {score['std']:.3f}")
    if report.utility:
        u = report.utility
        print(f"classifier accuracy: train synthetic {u['train_synthetic_test_real']['accuracy']:.3f}, "
              f"train real {u['train_real_test_real']['accuracy']:.3f} (the ceiling)")
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"evaluation: {os.path.join(out, 'evaluation.json')} (and .png, .html)")
    if private is not None:
        print(f"leakage check (curator-only, never publish): {os.path.join(out, LEAKAGE_NAME)}.json (and .png)")


def _info(args) -> int:
    from . import release
    from .vector import DatasetVector

    path = args.path
    if os.path.isdir(path) and release.exists(path):
        plans, report, settings = release.load(path)
        print(json.dumps({"classes": [str(p.label) for p in plans], "settings": settings, "privacy": report.to_dict()},
                         indent=1))
    elif path.endswith(".safetensors") and os.path.isfile(path):
        v = DatasetVector.load(path)
        print(json.dumps({"label": v.label, "layers": v.layers, "hidden": int(v.array.shape[1]), "model": v.model,
                          "privacy": v.privacy, "prompt": v.prompt}, indent=1, default=str))
    else:
        from .model import load_model

        model = load_model(path, device=args.device)
        print(json.dumps({**{k: v for k, v in vars(model.config).items() if k != "chat_template"},
                          "prompt_format": model.prompt_format}, indent=1))
    return EXIT_OK


# ------------------------------------------------------------------ pieces


def _private_release(args, release_dir: str):
    """Run the private steps once; a later run with the same settings reuses
    the saved release (no new privacy cost) instead of spending the budget again.

    The output location is checked before any record is read, and a failed
    run leaves no partial release behind. The input file's path is not
    saved (even hashed, a path can be guessed); a rerun with the same
    settings reuses the release whatever the input, and says so."""
    from . import release
    from .extract import check_privacy, check_sample_rate, class_groups
    from .model import load_model
    from .synthesis import private_steps

    settings = {k: getattr(args, k) for k in ("corpus", "text_column", "label_column", "eps", "delta",
                                              "domain", "method", "fixed_shots", "num_shots", "shots_eps",
                                              "length_eps", "shot_candidates", "prompt_format", "multi_line",
                                              "layers", "classes", "sample_rate", "adjacency", "num_negatives",
                                              "noise_seed", "max_new_tokens", "model")}
    release.recover(release_dir)
    if release.exists(release_dir):
        plans, report, saved = release.load(release_dir)
        if saved != settings:
            changed = sorted(k for k in settings if saved.get(k) != settings[k])
            raise InvalidInputError(f"{release_dir} holds a release made with other settings ({', '.join(changed)}); "
                                    "running again would spend the privacy budget twice: use another --out")
        print(f"reusing the private release in {release_dir} (no new privacy cost; its input is not checked)",
              file=sys.stderr)
        return plans, report
    release.check_writable(release_dir)
    try:
        layers = "auto" if args.layers == "auto" else [int(x) for x in args.layers.split(",")]
    except ValueError:
        raise InvalidInputError(f'--layers must be "auto" or comma-separated integers, got {args.layers!r}') from None
    texts, labels, classes = _read_input(args)
    # The privacy parameters and every record, checked before the model loads (the steps check them again).
    check_privacy(args.eps, args.delta, args.adjacency)
    check_sample_rate(args.sample_rate)
    class_groups(texts, labels, classes, "text", None)
    if args.domain is None and args.corpus is not None:
        args.domain = corpora.DOMAINS[args.corpus]
    model = load_model(args.model, device=args.device)
    with _curator_channel(args.show_private_diagnostics):
        _, plans, report = private_steps(
            texts, args.eps, labels=labels, classes=classes, delta=args.delta, model=model, domain=args.domain,
            method=args.method, fixed_shots=_shots_arg(args.fixed_shots), num_shots=args.num_shots,
            shots_eps=args.shots_eps, length_eps=args.length_eps, prompt_format=args.prompt_format,
            single_line=not args.multi_line,
            shot_candidates=None if args.shot_candidates is None else _public_texts(args.shot_candidates),
            layers=layers, sample_rate=args.sample_rate, adjacency=args.adjacency,
            batch_size=args.batch_size, progress=not args.no_progress, seed=args.seed, noise_seed=args.noise_seed,
            max_new_tokens=args.max_new_tokens, num_negatives=args.num_negatives,
        )
    release.save(release_dir, plans, report, settings)
    args._model = model
    return plans, report


@contextlib.contextmanager
def _curator_channel(show: bool):
    """With --show-private-diagnostics, the curator-only counts of the run,
    printed to stderr under their do-not-publish heading; otherwise nothing."""
    if not show:
        yield
        return
    from .diagnostics import curator_diagnostics

    with curator_diagnostics() as diagnostics:
        yield
    print(diagnostics, file=sys.stderr)


def _check_sampling(args) -> None:
    from ._epsvec import SamplingParams

    if args.n < 1:
        raise InvalidInputError(f"--n must be a positive integer, got {args.n}")
    SamplingParams(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)


def _length_eps(value: str):
    """``--length-eps``: "auto", "none" or a number (checked against eps later)."""
    if value in ("auto", "none"):
        return None if value == "none" else value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be "auto", "none" or a number, got {value!r}') from None


def _strength(value: str):
    """``--strength``: "auto" or a finite number >= 0."""
    try:
        strength = value if value == "auto" else float(value)
    except ValueError:
        strength = None
    if strength != "auto" and not (strength is not None and 0 <= strength < float("inf")):
        raise argparse.ArgumentTypeError(f'must be "auto" or a number >= 0, got {value!r}')
    return strength


def _shots_arg(value: str):
    if value == "none":
        return None
    if value in ("synthetic", "private"):
        return value
    return _public_texts(value)


def _public_texts(path: str) -> list[str]:
    from .data import read_table

    return read_table(path, "text")[0]


def _read_input(args):
    """``(texts, labels, classes)``. A bundled corpus declares its classes;
    a file's labels need ``--classes`` (compared as text)."""
    from .data import read_table

    if (args.input is None) == (args.corpus is None):
        raise InvalidInputError("give an input file or --corpus NAME (one of them)")
    classes = None if args.classes is None else [c.strip() for c in args.classes.split(",")]
    if args.corpus is not None:
        texts, labels = corpora.load(args.corpus)
        return texts, labels, classes or list(corpora.CLASSES[args.corpus])
    texts, labels = read_table(args.input, args.text_column, args.label_column)
    if labels is not None and classes is None:
        raise InvalidInputError("--label-column needs --classes a,b,...: the set of classes must be declared, not "
                                "read from the private records")
    return texts, None if labels is None else [None if l is None else str(l) for l in labels], classes


def _generate_file(args, plans, out: str) -> None:
    """Stream ``n`` samples per class to JSONL; resume an interrupted run.

    Sample ``k`` (class ``k // n``, index ``k % n``) depends only on the seed
    and ``k``, so a resumed file is the same as an uninterrupted one. The
    run's settings (and its seed, drawn once when not given) sit beside the
    output in ``OUT.state.json``. With ``--ray``, OUT is a directory of
    JSONL shards written by Ray actors (``epsvec.distributed``).
    """
    from .model import load_model
    from .progress import counted
    from .seeds import derive_seed
    from .synthesis import generate_for_class

    out = out.rstrip(os.sep) or out
    _check_out(out, getattr(args, "ray", False))
    model = getattr(args, "_model", None) or load_model(args.model, device=args.device)
    strength = model.recipe.strength_for([plan.vector for plan in plans]) if args.strength == "auto" else args.strength
    sampling = {"strength": strength, "temperature": args.temperature, "top_p": args.top_p,
                "max_new_tokens": args.max_new_tokens, "tidy": not args.no_tidy}
    seed, resuming = _start_or_resume(args, plans, out, sampling)
    for plan in plans:
        if plan.vector is not None:
            plan.vector.check_model(model)
    seeds = [derive_seed(seed, "samples", plan.label) for plan in plans]
    if getattr(args, "ray", False):
        _generate_on_ray(args, plans, model, out, seeds, sampling, resuming)
        return
    done = _complete_lines(out) if resuming else 0
    if not resuming:
        open(out, "w").close()
    total = args.n * len(plans)
    if done:
        print(f"resuming {out} at sample {done} of {total}", file=sys.stderr)
    with open(out, "a", encoding="utf-8") as f, counted(total, not args.no_progress, "generating", "sample") as bar:
        bar.update(done)
        k = done
        while k < total:
            c, j = divmod(k, args.n)
            stop = min(j + args.batch_size, args.n)
            texts = generate_for_class(model, plans[c], range(j, stop), seed=seeds[c], batch_size=args.batch_size,
                                       **sampling)
            for i, text in zip(range(j, stop), texts):
                f.write(json.dumps({"text": text, "label": plans[c].label, "index": i}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.update(stop - j)
            k += stop - j


def _check_out(out: str, on_ray: bool) -> None:
    """A .jsonl file, or with --ray a directory holding nothing but epsvec shards."""
    if not on_ray:
        if os.path.isdir(out):
            raise InvalidInputError(f"{out} is a directory; without --ray, --out names a .jsonl file")
        return
    if os.path.exists(out) and not os.path.isdir(out):
        raise InvalidInputError(f"{out} is a file; with --ray, --out names a directory of shards")
    others = [f for f in os.listdir(out) if not (f.startswith("part-") and f.endswith((".jsonl", ".tmp")))] \
        if os.path.isdir(out) else []
    if others:
        raise InvalidInputError(f"{out} holds files that are not epsvec shards ({others[0]}, ...); "
                                "choose another --out")


def _start_or_resume(args, plans, out: str, sampling: dict) -> tuple[int, bool]:
    """``(seed, resuming)``: an existing output made with these settings is
    resumed (its saved seed reused); otherwise the settings and a seed are saved."""
    state = {"n": args.n, "classes": [str(p.label) for p in plans], **sampling,
             "prompts": [p.prompt for p in plans],
             "vectors": [None if p.vector is None else p.vector.privacy.get("noise") for p in plans],
             # how the samples are split into batches (and, on Ray, into shard files)
             "batch_size": args.batch_size, "shards": args.shard_batches if getattr(args, "ray", False) else None}
    state_path = out + ".state.json"
    if os.path.exists(out) and not args.overwrite:
        saved = _read_state(state_path, out)
        seed = saved.pop("seed")
        changed = sorted({k for k in {*state, *saved} if saved.get(k) != state.get(k)}
                         | ({"seed"} if args.seed is not None and args.seed != seed else set()))
        if changed:
            raise InvalidInputError(f"{out} was written by a run with other settings ({', '.join(changed)}); pass "
                                    "--overwrite to replace it, or another --out")
        return seed, True
    seed = args.seed if args.seed is not None else secrets.randbits(62)
    _atomic_json(state_path, {**state, "seed": seed})
    return seed, False


def _generate_on_ray(args, plans, model, out: str, seeds: list[int], sampling: dict, resuming: bool) -> None:
    """The samples as JSONL shards in the directory ``out``, written by Ray
    actors; a resumed run writes only the shards that are missing."""
    import ray

    from .distributed import RayConfig, generate_to_dir

    if not resuming and os.path.isdir(out):  # --overwrite: only shards are there (checked first)
        for name in os.listdir(out):
            os.remove(os.path.join(out, name))
    if not ray.is_initialized():
        ray.init(address=args.ray_address, log_to_driver=False)
    config = RayConfig(workers=args.workers, num_cpus=args.cpus_per_worker, num_gpus=args.gpus_per_worker,
                       batch_size=args.shard_batches)
    written = generate_to_dir(plans, args.n, model, config, out, seeds=seeds, sampling=sampling,
                              batch_size=args.batch_size, progress=not args.no_progress)
    if resuming:
        print(f"resumed {out}: {written} missing shard(s) written", file=sys.stderr)


def _read_state(state_path: str, out: str) -> dict:
    try:
        with open(state_path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        raise InvalidInputError(f"{out} exists but was not written by epsvec generate; pass --overwrite") from None


def _complete_lines(path: str) -> int:
    """Count complete JSON lines; cut a torn last line left by an interruption."""
    with open(path, "rb") as f:
        data = f.read()
    keep = data.rfind(b"\n") + 1
    lines = data[:keep].splitlines()
    for number, line in enumerate(lines, 1):
        try:
            json.loads(line)
        except ValueError:
            raise CorruptFileError(f"{path}, line {number}: not valid JSON; pass --overwrite to start again") from None
    if keep < len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
    return len(lines)


def _atomic_json(path: str, value) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, default=str)
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------------ parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="epsvec", description="Differentially private synthetic text with "
                                     "dataset vectors (EPSVec).", epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"epsvec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p):
        p.add_argument("--model", default=None, help="HF model directory, .gguf file or a known name: "
                       "smollm2-135m-instruct (the embedded default), gemma-3-270m (a base model), "
                       "qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct")
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
        p.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (copies of one prompt, "
                       "when generating, run 4x as many)")
        p.add_argument("--seed", type=int, default=None, help="reproducible sampling (the privacy noise stays secret)")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def private(p):
        p.add_argument("input", nargs="?", help="private records: .jsonl, .csv, .tsv or .parquet")
        p.add_argument("--corpus", choices=corpora.NAMES, help="a bundled public corpus instead of a file (demos)")
        p.add_argument("--text-column", default="text", help="the column that holds the texts")
        p.add_argument("--label-column", default=None, help="one synthetic class per label (needs --classes)")
        p.add_argument("--classes", default=None, help="the public set of classes, comma-separated; every class "
                       "gets a vector, records labelled outside it are refused (a --corpus declares its own)")
        p.add_argument("--eps", type=float, required=True, help="total privacy budget")
        p.add_argument("--delta", type=float, default=1e-5, help="total delta; keep it well below 1/records")
        p.add_argument("--domain", default=None, help='what the texts are, e.g. "movie reviews"')
        p.add_argument("--fixed-shots", default="none", help='"none" (the zero-shot prompt), "synthetic" (free), '
                       '"private" (DP vote) or a file of public texts')
        p.add_argument("--num-shots", type=int, default=2, help="shots per prompt with --fixed-shots synthetic "
                       "or private")
        p.add_argument("--shot-candidates", default=None, help='a file of public texts of the same domain that '
                       'the records vote over with --fixed-shots private (instead of the model\'s own samples)')
        p.add_argument("--prompt-format", choices=("auto", "raw", "chat"), default="auto", help='"raw" text (base '
                       'models), "chat" (through the chat template), or "auto" (chosen from the model)')
        p.add_argument("--multi-line", action="store_true", help="keep line breaks inside examples and do not "
                       "stop a sample at a newline (multi-paragraph texts); by default each example is one line")
        p.add_argument("--shots-eps", type=float, default=None, help="budget of the private shot vote (0.1)")
        p.add_argument("--length-eps", type=_length_eps, default="auto", help='budget of the noisy histogram of '
                       'record lengths each sample draws its least length from: a number, "none", or "auto" (eps / '
                       '8 for epsvec, none for the baselines)')
        p.add_argument("--layers", default="auto", help='"auto" or comma-separated block indices')
        p.add_argument("--sample-rate", type=float, default=None, help="Poisson-sample each record at this public "
                       "rate (amplifies privacy, reads fewer records)")
        p.add_argument("--noise-seed", type=int, default=None, help=argparse.SUPPRESS)  # tests only: voids the DP
        p.add_argument("--adjacency", choices=("add_remove", "substitution"), default="add_remove",
                       help="neighbouring datasets differ by one record added/removed, or one replaced")
        p.add_argument("--num-negatives", type=int, default=64, help="public negatives generated per class")
        p.add_argument("--max-new-tokens", type=int, default=64, help="length cap of the model's samples (shots, "
                       "negatives, synthetic texts)")
        p.add_argument("--show-private-diagnostics", action="store_true", help="print exact counts from the "
                       "private records (class sizes, records cut, clipped) for the data holder only, under a "
                       "heading that says not to publish them; by default nothing about the records is printed")

    def sampling(p, length=True):
        p.add_argument("--n", type=int, required=True, help="samples per class")
        p.add_argument("--strength", type=_strength, default="auto", help="steering strength (fraction of residual "
                       'norm), or "auto": the model\'s recipe (epsvec.recipes)')
        p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: greedy)")
        p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (1: off)")
        if length:
            p.add_argument("--max-new-tokens", type=int, default=64, help="length cap of each sample")
        p.add_argument("--no-tidy", action="store_true", help="keep the quotes and tag fragments the prompt's form "
                       "leaves on samples, and a capped sample's unfinished sentence (see epsvec.tidy)")
        p.add_argument("--overwrite", action="store_true", help="replace the output instead of resuming it")

    command = functools.partial(sub.add_parser, formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    p = command("synthesize", help="private records in; synthetic JSONL and a privacy report out")
    private(p), sampling(p, length=False), common(p)
    p.add_argument("--method", choices=("epsvec", "fixed_shot", "zero_shot"), default="epsvec",
                   help="steered by the DP vector, or an unsteered baseline")
    p.add_argument("--evaluate-against", default=None, metavar="REAL", help="real texts held out from the input "
                   "(same columns): scores the samples (epsvec evaluate, without the leakage check) into OUT/evaluation")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(run=_synthesize)

    p = command("extract", help="private records in; a release directory of DP dataset vectors out")
    private(p), common(p)
    p.add_argument("--out", required=True, help="release directory to create")
    p.set_defaults(run=_extract)

    p = command("generate", help="steered samples from a release (or vector files) to JSONL; resumable")
    p.add_argument("release", nargs="+", help="release directories or vector .safetensors files")
    sampling(p), common(p)
    p.add_argument("--out", required=True, help="output .jsonl (with --ray: a directory of .jsonl shards)")
    p.add_argument("--ray", action="store_true", help="generate on a Ray cluster (pip install epsvec[ray])")
    p.add_argument("--ray-address", default=None, help="the cluster to join (default: RAY_ADDRESS, else a local one)")
    p.add_argument("--workers", type=int, default=2, help="Ray actors, each with one loaded model")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs Ray reserves for each actor")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="1: each actor's model on its own GPU")
    p.add_argument("--shard-batches", type=int, default=64, help="batches per shard file (one Ray task; a rerun "
                   "writes the missing shards)")
    p.set_defaults(run=_generate)

    p = command("evaluate", help="is the synthetic data faithful and useful, and does it copy a private record?")
    p.add_argument("synthetic", help="synthetic texts: .jsonl, .csv, .tsv or .parquet")
    p.add_argument("--reference", required=True, help="real texts held out from the release, same format")
    p.add_argument("--private", default=None, help="the private records the release read: adds the curator-only "
                   "leakage check, written to its own CURATOR-ONLY file")
    p.add_argument("--text-column", default="text", help="the column that holds the texts (every file)")
    p.add_argument("--label-column", default=None, help="labels (synthetic and reference): per-class MAUVE and "
                   "the classifiers")
    p.add_argument("--featurizer", default=None, help="a sentence-transformers model path (default: the bundled "
                   "all-MiniLM-L6-v2)")
    p.add_argument("--ngram", type=int, default=8, help="list runs of this many words shared with a private record")
    p.add_argument("--out", required=True, help="output directory (not a release directory)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_evaluate)

    p = command("info", help="describe a release, a vector file or a model")
    p.add_argument("path", help="a release directory, a vector .safetensors file, or a model")
    p.add_argument("--device", default="cpu", help="where to load a model: cpu, cuda, cuda:N or auto")
    p.set_defaults(run=_info)
    return parser


if __name__ == "__main__":
    sys.exit(main())
