"""epsvec.synthesize end to end on a tiny model: per-class samples, baselines,
the DP shot vote, the privacy report, HF datasets and llama.cpp export."""

from __future__ import annotations

import json

import numpy as np
import pytest

import epsvec
from epsvec import synthesis as synth


RECORDS = [
    "A tender, funny and wise film.", "The cast is wonderful.", "Dull, overlong and badly edited.",
    "I laughed, I cried.", "A visual feast with a hollow heart.", "The best thriller of the year.",
    "Flat and lifeless.", "A triumph of style.",
]
LABELS = ["pos", "pos", "neg", "pos", "neg", "pos", "neg", "pos"]
CLASSES = ["neg", "pos"]
FAST = dict(max_new_tokens=6, progress=False, seed=3, noise_seed=4)
RAW = epsvec.prompts.PromptFormat()


@pytest.fixture(scope="module")
def model(tiny_models):
    return epsvec.load_model(tiny_models["llama"], device="cpu")


def test_n_per_class_labels_and_report(model):
    out = epsvec.synthesize(RECORDS, 3, eps=4.0, labels=LABELS, classes=CLASSES, model=model, domain="reviews", **FAST)
    assert len(out) == 6 and out.labels == ["neg"] * 3 + ["pos"] * 3
    assert all(isinstance(t, str) and t for t in out.texts)
    report = out.report
    assert [s.name for s in report.steps] == ["length histogram", "dataset vector"]
    assert (report.eps, report.delta, report.classes) == (pytest.approx(4.0), pytest.approx(1e-5), ["neg", "pos"])
    step = report.steps[1]
    assert step.sigma == pytest.approx(epsvec.privacy.gaussian_sigma(3.5, 9e-6)), "the rest after eps / 8"
    assert set(step.clip_norm) == {"neg", "pos"} and step.layers == [1, 2]
    assert report.generation["per_class"] == 3 and "free" in report.generation["rule"]
    assert epsvec.PrivacyReport.from_dict(json.loads(report.to_json())) == report, "the JSON round-trips"
    for plan in out.plans:
        assert plan.shots == [] and plan.vector.label == plan.label, "no shots by default"
        assert plan.vector.prompt == {"domain": "reviews", "fixed_shots": plan.shots,
                                      "format": {"name": "raw", "before": "", "after": "", "single_line": True}}
        assert set(plan.vector.residual_norms) == {1, 2} and min(plan.vector.residual_norms.values()) > 0
    again = epsvec.synthesize(RECORDS, 3, eps=4.0, labels=LABELS, classes=CLASSES, model=model, domain="reviews", **FAST)
    assert again.texts == out.texts, "a seed reproduces the run"


def test_steering_changes_the_samples(model):
    kw = dict(labels=LABELS, classes=CLASSES, model=model, fixed_shots="synthetic", **FAST)
    steered = epsvec.synthesize(RECORDS, 4, eps=4.0, strength=0.5, **kw)
    plain = epsvec.synthesize(RECORDS, 4, eps=4.0, method="fixed_shot", **kw)
    assert [p.shots for p in steered.plans] == [p.shots for p in plain.plans], "same prompts, same shots"
    assert steered.texts != plain.texts


class CountingRelease:
    """epsvec._epsvec with a PrivateRelease that logs how many records each release reads."""

    def __init__(self, real, reads):
        self._real, self._reads = real, reads

    def __getattr__(self, name):
        return getattr(self._real, name)

    def PrivateRelease(self, *args):
        release, reads = self._real.PrivateRelease(*args), self._reads

        class Logged:
            def offer_prompts(self, engine, prefix, tails, *rest):
                reads.append(len(tails))
                return release.offer_prompts(engine, prefix, tails, *rest)

            def __getattr__(self, name):
                return getattr(release, name)

        return Logged()


def test_eps_sweep_reads_the_records_once(model, monkeypatch):
    import importlib

    extract_module = importlib.import_module("epsvec.extract")
    reads = []
    monkeypatch.setattr(extract_module, "_epsvec", CountingRelease(extract_module._epsvec, reads))
    sweep = epsvec.synthesize(RECORDS, 2, eps=[1.0, 8.0], labels=LABELS, classes=CLASSES, model=model, **FAST)
    sweep_reads = list(reads)
    single = epsvec.synthesize(RECORDS, 2, eps=1.0, labels=LABELS, classes=CLASSES, model=model, **FAST)
    assert reads[len(sweep_reads):] == sweep_reads, "two budgets cost one read"
    assert sweep_reads == [3, 5], "one read of each class"
    assert sweep[1.0].texts == single.texts and sweep[1.0].report.steps == single.report.steps
    for a, b in zip(sweep[1.0].plans, single.plans):
        np.testing.assert_array_equal(a.vector.array, b.vector.array)
    eight = sweep[8.0].report
    assert eight.eps == pytest.approx(8.0) and eight.sweep["sum_eps"] == 9.0
    assert eight.steps[1].sigma == pytest.approx(epsvec.privacy.gaussian_sigma(7.0, 9e-6))
    # Publishing both: per step, one Gaussian release with sigma_eff = (s1^-2 + s8^-2)^-1/2; tighter than 1 + 8.
    joint = 0.0
    for share, delta in ((1 / 8, 1e-6), (7 / 8, 9e-6)):
        s1, s8 = (epsvec.privacy.gaussian_sigma(share * e, delta) for e in (1.0, 8.0))
        joint += epsvec.privacy.gaussian_epsilon((s1**-2 + s8**-2) ** -0.5, delta)
    assert eight.sweep["joint_eps"] == pytest.approx(joint) and eight.sweep["joint_delta"] == pytest.approx(1e-5)
    assert 8.0 < eight.sweep["joint_eps"] < 9.0
    # Each budget draws its own noise (shared noise would reveal the noiseless sum).
    twins = epsvec.synthesize(RECORDS, 1, eps=[2.0, 2.000001], labels=LABELS, classes=CLASSES, model=model, **FAST)
    a, b = (twins[e].plans[1].vector.array for e in (2.0, 2.000001))
    assert not np.allclose(a, b, atol=0.05)
    with pytest.raises(epsvec.InvalidInputError, match="sweep"):
        epsvec.synthesize(RECORDS, 2, eps=[1.0, 2.0], labels=LABELS, classes=CLASSES, model=model, sample_rate=0.5, **FAST)
    with pytest.raises(epsvec.PrivacyError, match="distinct"):
        epsvec.synthesize(RECORDS, 2, eps=[1.0, 1.0], labels=LABELS, classes=CLASSES, model=model, **FAST)


def test_baselines_spend_only_what_they_run(model):
    zero = epsvec.synthesize(RECORDS, 2, eps=4.0, labels=LABELS, classes=CLASSES, model=model, method="zero_shot", **FAST)
    assert zero.report.steps == [] and zero.report.eps == 0
    assert all(p.shots == [] and p.vector is None for p in zero.plans)
    fixed = epsvec.synthesize(RECORDS, 2, eps=4.0, labels=LABELS, classes=CLASSES, model=model, method="fixed_shot",
                              fixed_shots="private", **FAST)
    assert [s.name for s in fixed.report.steps] == ["fixed-shot selection"]
    assert fixed.report.eps == pytest.approx(0.1)
    with pytest.raises(epsvec.InvalidInputError, match="method"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, model=model, method="dp-sgd")


def test_private_shots_compose_to_the_budget(model):
    out = epsvec.synthesize(RECORDS, 2, eps=3.0, delta=1e-6, labels=LABELS, classes=CLASSES, model=model,
                            fixed_shots="private", length_eps=None, **FAST)
    shots, vector = out.report.steps
    assert (shots.eps, vector.eps) == (pytest.approx(0.1), pytest.approx(2.9))
    assert shots.delta + vector.delta == pytest.approx(1e-6)
    assert out.report.eps == pytest.approx(3.0) and epsvec.report.compose_sequential([shots, vector]) == (
        pytest.approx(3.0), pytest.approx(1e-6))
    assert shots.sigma == pytest.approx(epsvec.privacy.gaussian_sigma(0.1, 1e-7))
    assert vector.sigma == pytest.approx(epsvec.privacy.gaussian_sigma(2.9, 9e-7))
    with pytest.raises(epsvec.PrivacyError, match="shots_eps"):
        epsvec.synthesize(RECORDS, 2, eps=1.0, labels=LABELS, classes=CLASSES, model=model, fixed_shots="private", shots_eps=1.0)


def test_private_vote_picks_the_most_voted_candidates(model):
    """With little noise, records that copy candidates 5 and 9 elect them."""
    candidates = [g.text.strip() or "." for g in synth._zero_shot(model, RAW, None, None, synth.SHOT_CANDIDATES, 16, 7)]
    emb = synth._embed(model, candidates, 1, 16)
    distinct = [i for i in range(len(candidates)) if (emb @ emb[i] > 0.9999).sum() == 1]
    a, b = distinct[0], distinct[1]
    records = [candidates[a]] * 30 + [candidates[b]] * 20 + [candidates[distinct[2]]] * 5
    shots, step = synth._vote_shots(model, RAW, records, None, None, 2, (50.0, 1e-6), "add_remove", 16, False, 7, None)
    assert shots == [candidates[a], candidates[b]]
    assert step.sigma == pytest.approx(epsvec.privacy.gaussian_sigma(50.0, 1e-6)) and not step.seeded


def test_private_vote_over_public_candidates(model):
    """shot_candidates: the records elect the public texts they resemble; the report says where candidates came from."""
    public = ["A warm and moving story.", "Tedious from start to finish.", "Great music, weak plot.",
              "An instant classic.", "Nothing works here."]
    records = [public[3]] * 30 + [public[1]] * 20 + [public[0]] * 5
    shots, step = synth._vote_shots(model, RAW, records, None, None, 2, (50.0, 1e-6), "add_remove", 16, False, 7, None,
                                    public=public)
    assert shots == [public[3], public[1]] and "public candidates given by the user" in step.mechanism
    out = epsvec.synthesize(RECORDS, 2, eps=3.0, labels=LABELS, classes=CLASSES, model=model, fixed_shots="private",
                            shot_candidates={"neg": public[:2], "pos": public[2:]}, **FAST)
    assert set(out.plans[0].shots) <= set(public[:2]) and set(out.plans[1].shots) <= set(public[2:])
    with pytest.raises(epsvec.InvalidInputError, match='only with fixed_shots="private"'):
        epsvec.synthesize(RECORDS, 2, eps=3.0, labels=LABELS, classes=CLASSES, model=model, shot_candidates=public, **FAST)
    with pytest.raises(epsvec.InvalidInputError, match="has 1 texts; num_shots is 2"):
        epsvec.synthesize(RECORDS, 2, eps=3.0, labels=LABELS, classes=CLASSES, model=model, fixed_shots="private",
                          shot_candidates={"neg": public[:1], "pos": public}, **FAST)


def test_samples_are_single_lines_by_default(model):
    """The tiny random model writes newlines freely; by default each sample ends before one, and the
    vector records the format its samples need."""
    steps = dict(labels=LABELS, classes=CLASSES, model=model, **{**FAST, "max_new_tokens": 24})
    multi = epsvec.synthesize(RECORDS, 8, eps=3.0, single_line=False, **steps)
    assert any("\n" in t for t in multi.texts)  # or the test below proves nothing
    out = epsvec.synthesize(RECORDS, 8, eps=3.0, **steps)
    assert not any("\n" in t for t in out.texts)
    assert all(p.vector.prompt["format"]["single_line"] for p in out.plans)
    assert synth.ClassPlan.from_vector(out.plans[0].vector).format.single_line


class StopsOften(epsvec.prompts.PromptFormat):
    """Stops at a stray byte (decoded as U+FFFD), so the tiny model, whose
    tokens are random bytes, often writes an empty sample."""

    @property
    def stop(self):
        return ["\ufffd"]


def test_empty_samples_are_retried_together_and_each_as_it_would_be_alone(model, monkeypatch):
    plan = synth.ClassPlan("pos", None, [], format=StopsOften())
    sampling = dict(seed=5, strength=0.0, temperature=1.0, top_p=1.0, max_new_tokens=4)
    calls = []
    generate = model.generate
    monkeypatch.setattr(model, "generate", lambda prompts, **kw: calls.append(len(prompts)) or generate(prompts, **kw))
    whole = synth.generate_for_class(model, plan, range(24), **sampling)
    assert len(calls) <= 1 + synth.EMPTY_RETRIES and calls[1] < 24  # one call per attempt, only the empty ones
    first = generate([plan.prompt] * 24, seed=5, max_new_tokens=4, stop=plan.format.stop)
    retried = [j for j, text in enumerate(first) if not text.strip()]
    assert retried and any(whole[j] for j in retried)  # or this proves nothing
    split = [text for part in (range(0, 7), range(7, 24)) for text in
             synth.generate_for_class(model, plan, part, **sampling)]
    alone = [synth.generate_for_class(model, plan, [j], **sampling)[0] for j in retried]
    assert split == whole and alone == [whole[j] for j in retried]


def test_datasets_in_and_out(model):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"review": datasets.Value("string"),
                                  "stars": datasets.ClassLabel(names=["neg", "pos"])})
    ds = datasets.Dataset.from_dict({"review": RECORDS, "stars": [int(label == "pos") for label in LABELS]},
                                    features=features)
    out = epsvec.synthesize(ds, 2, eps=4.0, model=model, text_column="review", label_column="stars",
                            return_dataset=True, **FAST)
    assert isinstance(out, datasets.Dataset) and out.column_names == ["text", "label"]
    assert sorted(set(out["label"])) == ["neg", "pos"], "ClassLabel ids become their names"
    report = json.loads(out.info.description)
    assert report["guarantee"]["eps"] == 4.0 and report["classes"] == ["neg", "pos"], "ClassLabel declares classes"
    vectors = epsvec.extract(ds, eps=4.0, model=model, text_column="review", label_column="stars", seed=1,
                             progress=False, negative_max_new_tokens=6)
    assert set(vectors) == {"neg", "pos"}
    with pytest.raises(epsvec.InvalidInputError, match="no text column 'text'"):
        epsvec.synthesize(ds, 2, eps=4.0, model=model)


def test_dataset_map_recipe(model, tmp_path):
    """The README recipe: generate on a saved vector inside Dataset.map."""
    datasets = pytest.importorskip("datasets")
    vector = epsvec.synthesize(RECORDS, 1, eps=4.0, model=model, **FAST).plans[0].vector
    vector.save(tmp_path / "v.safetensors")
    v = epsvec.DatasetVector.load(tmp_path / "v.safetensors")
    plan = synth.ClassPlan.from_vector(v)
    prompts = datasets.Dataset.from_dict({"prompt": [plan.prompt] * 5})
    out = prompts.map(lambda batch: {"text": model.generate(batch["prompt"], steer=v, strength=0.06, max_new_tokens=5,
                                                             stop=plan.format.stop, seed=0)},
                      batched=True, batch_size=4)
    assert len(out) == 5 and all(isinstance(t, str) and "\n" not in t for t in out["text"])


def test_to_gguf_reads_back_as_a_llama_cpp_control_vector(model, tmp_path):
    gguf = pytest.importorskip("gguf")
    v = epsvec.synthesize(RECORDS, 1, eps=4.0, model=model, **FAST).plans[0].vector
    v.to_gguf(tmp_path / "v.gguf", strength=0.5)
    reader = gguf.GGUFReader(tmp_path / "v.gguf")
    fields = {name: f.contents() for name, f in reader.fields.items()}
    assert fields["general.architecture"] == "controlvector"
    assert fields["controlvector.model_hint"] == "LlamaForCausalLM"
    assert fields["controlvector.layer_count"] == 2
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    assert sorted(tensors) == ["direction.1", "direction.2"]
    for layer in (1, 2):
        want = 0.5 * v.residual_norms[layer] * v.directions[layer]
        np.testing.assert_allclose(tensors[f"direction.{layer}"], want, rtol=1e-6)
    block0 = epsvec.DatasetVector({0: v.directions[1]})
    with pytest.raises(epsvec.InvalidInputError, match="block 0"):
        block0.to_gguf(tmp_path / "bad.gguf")


def test_relative_strength_scales_by_residual_norm(model):
    v = epsvec.synthesize(RECORDS, 1, eps=4.0, model=model, **FAST).plans[0].vector
    absolute = {l: v.residual_norms[l] * d for l, d in v.directions.items()}
    a = model.generate("hi", max_new_tokens=5, temperature=0, steer=v, strength=0.3)
    b = model.generate("hi", max_new_tokens=5, temperature=0, steer=absolute, strength=0.3)
    assert a == b


def test_oversample_keeps_the_samples_the_released_vector_ranks_highest(model):
    kw = dict(labels=LABELS, classes=CLASSES, model=model, domain="reviews", **FAST)
    every = epsvec.synthesize(RECORDS, 6, eps=4.0, **kw)
    kept = epsvec.synthesize(RECORDS, 2, eps=4.0, oversample=3, **kw)
    assert kept.labels == ["neg"] * 2 + ["pos"] * 2
    assert kept.report.generation["oversample"] == 3 and "free" in kept.report.generation["filter"]
    for plan in every.plans:
        drawn = [t for t, label in zip(every.texts, every.labels) if label == plan.label]
        chosen = [t for t, label in zip(kept.texts, kept.labels) if label == plan.label]
        assert chosen == [t for t in drawn if t in chosen], "a subset of the same draws, in their order"
        # Reference: each draw written into the class prompt as a record, mean state over its tokens
        # (the first, sink token skipped) at the vector's layers, dotted with the released directions.
        score = {}
        for text in drawn:
            full = epsvec.prompts.prefix("reviews", plan.label, [], plan.format) + epsvec.prompts.shot(
                text, plan.label, plan.format) + epsvec.prompts.opening(plan.label)
            states = model.hidden_states(full, layers=plan.vector.layers, pool=None)[0][1:]
            score[text] = float(np.einsum("lh,lh->", states.mean(axis=0), plan.vector.array))
        dropped = [score[t] for t in drawn if t not in chosen]
        assert min(score[t] for t in chosen) >= max(dropped) - 1e-3 * abs(max(dropped))
    with pytest.raises(epsvec.InvalidInputError, match="oversample"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, method="zero_shot", oversample=2, **kw)
    with pytest.raises(epsvec.InvalidInputError, match="oversample"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, oversample=0, **kw)


def test_bad_input(model):
    with pytest.raises(epsvec.InvalidInputError, match="n must be"):
        epsvec.synthesize(RECORDS, 0, eps=4.0, model=model)
    with pytest.raises(epsvec.PrivacyError, match="eps"):
        epsvec.synthesize(RECORDS, 2, eps=-1.0, model=model)
    with pytest.raises(epsvec.InvalidInputError, match="not in classes"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, labels=LABELS, classes=["pos"], model=model)
    with pytest.raises(TypeError):
        epsvec.synthesize([1, 2], 2, eps=4.0, model=model)
    with pytest.raises(epsvec.InvalidInputError, match="fixed_shots"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, model=model, fixed_shots="public")


def test_poisson_sampling_at_a_public_rate(model):
    out = epsvec.synthesize(RECORDS * 3, 1, eps=2.0, labels=LABELS * 3, classes=CLASSES, model=model, sample_rate=0.3,
                            **FAST)
    lengths, step = out.report.steps
    assert step.sample_rate == 0.3 and step.sigma == pytest.approx(epsvec.privacy.gaussian_sigma(1.75, 9e-6, sample_rate=0.3))
    assert lengths.sample_rate == 0.3, "the length histogram Poisson-samples at the same rate (its own coins)"
    assert "size" not in out.report.to_json(), "no class size, exact or implied, is in the report"
    with pytest.raises(TypeError, match="sample_size"):
        epsvec.synthesize(RECORDS, 1, eps=2.0, model=model, sample_size=4)


def test_bad_sampling_settings_fail_before_any_budget_is_spent(model, monkeypatch):
    monkeypatch.setattr(synth, "_private_steps_grid", lambda *a, **k: pytest.fail("private steps ran"))
    with pytest.raises(ValueError, match="temperature"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, model=model, temperature=-1.0)
    with pytest.raises(epsvec.InvalidInputError, match="n must be"):
        epsvec.synthesize(RECORDS, 0, eps=4.0, model=model)
    for bad in ("strong", -0.1, float("nan"), True):
        with pytest.raises(epsvec.InvalidInputError, match="strength"):
            epsvec.synthesize(RECORDS, 2, eps=4.0, model=model, strength=bad)
    with pytest.raises(epsvec.InvalidInputError, match="tidy"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, model=model, tidy="yes")


def test_auto_settings_read_the_models_recipe_and_the_report_says_which(model, monkeypatch):
    out = epsvec.synthesize(RECORDS, 2, eps=4.0, labels=LABELS, classes=CLASSES, model=model, **FAST)
    assert model.recipe == epsvec.recipes.DEPTH_RULE, "the tiny model has no measured recipe"
    assert "no recipe measured" in out.report.generation["recipe"]
    # The rule: each steered block is pushed, on average over blocks and classes, by C / sqrt(blocks).
    strength, vectors = out.report.generation["strength"], [plan.vector for plan in out.plans]
    per_block = [list(v.privacy["clip_norm"].values())[0] / np.sqrt(len(v.layers)) for v in vectors]
    pushed_by_it = [c / np.mean([v.residual_norms[l] for l in v.layers]) for c, v in zip(per_block, vectors)]
    assert strength == pytest.approx(np.mean(pushed_by_it), rel=1e-6) and 0 < strength != 0.06
    measured = epsvec.recipes.Recipe(depth=(0.0, 0.0), strength=0.2, prompt_format="raw", measured="a test")
    monkeypatch.setattr(model, "recipe", measured)
    out = epsvec.synthesize(RECORDS, 2, eps=4.0, labels=LABELS, classes=CLASSES, model=model, **FAST)
    assert out.report.generation["strength"] == 0.2 and out.report.generation["recipe"] == "a test"
    assert out.report.steps[-1].layers == [0] and model.prompt_format == "raw"
    assert epsvec.synthesize(RECORDS, 2, eps=4.0, model=model, strength=0.05, layers=[1],
                             **FAST).report.generation["strength"] == 0.05


def test_one_seed_rule_gives_every_purpose_its_own_stream():
    from epsvec.seeds import derive_seed

    assert derive_seed(None, "samples", "pos") is None, "no seed: OS entropy"
    streams = {derive_seed(7, purpose, label) for purpose in ("negatives", "samples", "shot candidates")
               for label in ("pos", "neg")}
    assert len(streams) == 6 and all(0 <= s < 2**63 for s in streams)
    assert derive_seed(7, "samples", "pos") == derive_seed(7, "samples", "pos") != derive_seed(8, "samples", "pos")


def test_a_seed_does_not_fix_the_privacy_noise(model):
    kw = dict(labels=LABELS, classes=CLASSES, model=model, max_new_tokens=6, progress=False, seed=3)
    a, b = (epsvec.synthesize(RECORDS, 1, eps=4.0, **kw) for _ in range(2))
    assert not np.allclose(a.plans[0].vector.array, b.plans[0].vector.array) and not a.report.seeded
    c = epsvec.synthesize(RECORDS, 1, eps=4.0, noise_seed=1, **kw)
    assert c.report.seeded and all(s.seeded for s in c.report.steps)
