"""epsvec.synthesize end to end on a tiny model: per-class samples, baselines,
the DP shot vote, the privacy report, HF datasets and llama.cpp export."""

from __future__ import annotations

import json

import numpy as np
import pytest

import epsvec
from epsvec import synthesis as synth

pytestmark = pytest.mark.filterwarnings("ignore:.*the vector will be mostly noise")

RECORDS = [
    "A tender, funny and wise film.", "The cast is wonderful.", "Dull, overlong and badly edited.",
    "I laughed, I cried.", "A visual feast with a hollow heart.", "The best thriller of the year.",
    "Flat and lifeless.", "A triumph of style.",
]
LABELS = ["pos", "pos", "neg", "pos", "neg", "pos", "neg", "pos"]
FAST = dict(max_new_tokens=6, progress=False, seed=3)


@pytest.fixture(scope="module")
def model(tiny_models):
    return epsvec.load_model(tiny_models["llama"], device="cpu")


def test_n_per_class_labels_and_report(model):
    out = epsvec.synthesize(RECORDS, 3, eps=4.0, labels=LABELS, model=model, domain="reviews", **FAST)
    assert len(out) == 6 and out.labels == ["neg"] * 3 + ["pos"] * 3
    assert all(isinstance(t, str) and t for t in out.texts)
    report = out.report
    assert [s["step"] for s in report["steps"]] == ["dataset vector"]
    assert report["guarantee"]["eps"] == 4.0 and report["guarantee"]["delta"] == 1e-5
    step = report["steps"][0]
    assert step["sigma"] == {c: pytest.approx(epsvec.privacy.gaussian_sigma(4.0, 1e-5)) for c in ("neg", "pos")}
    assert set(step["clip_norm"]) == {"neg", "pos"} and step["layers"] == [1, 2]
    assert report["generation"]["per_class"] == 3 and "free" in report["generation"]["rule"]
    json.dumps(report)  # the report is plain JSON
    for plan in out.plans:
        assert plan.shots == [] and plan.vector.label == plan.label, "no shots by default"
        assert plan.vector.prompt == {"domain": "reviews", "fixed_shots": plan.shots}
        assert set(plan.vector.residual_norms) == {1, 2} and min(plan.vector.residual_norms.values()) > 0
    again = epsvec.synthesize(RECORDS, 3, eps=4.0, labels=LABELS, model=model, domain="reviews", **FAST)
    assert again.texts == out.texts, "a seed reproduces the run"


def test_steering_changes_the_samples(model):
    kw = dict(labels=LABELS, model=model, fixed_shots="synthetic", **FAST)
    steered = epsvec.synthesize(RECORDS, 4, eps=4.0, strength=0.5, **kw)
    plain = epsvec.synthesize(RECORDS, 4, eps=4.0, method="fixed_shot", **kw)
    assert [p.shots for p in steered.plans] == [p.shots for p in plain.plans], "same prompts, same shots"
    assert steered.texts != plain.texts


def test_eps_sweep_reads_the_records_once(model, monkeypatch):
    import importlib

    extract_module = importlib.import_module("epsvec.extract")

    reads = []
    pooled = extract_module._pooled
    monkeypatch.setattr(extract_module, "_pooled", lambda *a, **k: reads.append(len(a[1])) or pooled(*a, **k))
    sweep = epsvec.synthesize(RECORDS, 2, eps=[1.0, 8.0], labels=LABELS, model=model, **FAST)
    sweep_reads = list(reads)
    single = epsvec.synthesize(RECORDS, 2, eps=1.0, labels=LABELS, model=model, **FAST)
    assert reads[len(sweep_reads):] == sweep_reads, "two budgets cost one read"
    assert sweep[1.0].texts == single.texts and sweep[1.0].report["guarantee"] == single.report["guarantee"]
    for a, b in zip(sweep[1.0].plans, single.plans):
        np.testing.assert_array_equal(a.vector.array, b.vector.array)
    eight = sweep[8.0].report
    assert eight["guarantee"]["eps"] == 8.0 and "sum of their eps" in eight["sweep"]
    assert eight["steps"][0]["sigma"]["pos"] == pytest.approx(epsvec.privacy.gaussian_sigma(8.0, 1e-5))
    # Each budget draws its own noise (shared noise would reveal the noiseless sum).
    twins = epsvec.synthesize(RECORDS, 1, eps=[2.0, 2.000001], labels=LABELS, model=model, **FAST)
    a, b = (twins[e].plans[1].vector.array for e in (2.0, 2.000001))
    assert not np.allclose(a, b, atol=0.05)
    with pytest.raises(epsvec.InvalidInputError, match="sweep"):
        epsvec.synthesize(RECORDS, 2, eps=[1.0, 2.0], labels=LABELS, model=model, sample_size=3, **FAST)
    with pytest.raises(epsvec.PrivacyError, match="distinct"):
        epsvec.synthesize(RECORDS, 2, eps=[1.0, 1.0], labels=LABELS, model=model, **FAST)


def test_baselines_spend_only_what_they_run(model):
    zero = epsvec.synthesize(RECORDS, 2, eps=4.0, labels=LABELS, model=model, method="zero_shot", **FAST)
    assert zero.report["steps"] == [] and zero.report["guarantee"]["eps"] == 0
    assert all(p.shots == [] and p.vector is None for p in zero.plans)
    fixed = epsvec.synthesize(RECORDS, 2, eps=4.0, labels=LABELS, model=model, method="fixed_shot",
                              fixed_shots="private", **FAST)
    assert [s["step"] for s in fixed.report["steps"]] == ["fixed-shot selection"]
    assert fixed.report["guarantee"]["eps"] == pytest.approx(0.1)
    with pytest.raises(epsvec.InvalidInputError, match="method"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, model=model, method="dp-sgd")


def test_private_shots_compose_to_the_budget(model):
    out = epsvec.synthesize(RECORDS, 2, eps=3.0, delta=1e-6, labels=LABELS, model=model, fixed_shots="private", **FAST)
    shots, vector = out.report["steps"]
    assert (shots["eps"], vector["eps"]) == (pytest.approx(0.1), pytest.approx(2.9))
    assert shots["delta"] + vector["delta"] == pytest.approx(1e-6)
    assert out.report["guarantee"]["eps"] == pytest.approx(3.0)
    assert shots["sigma"] == pytest.approx(epsvec.privacy.gaussian_sigma(0.1, 1e-7))
    assert vector["sigma"]["pos"] == pytest.approx(epsvec.privacy.gaussian_sigma(2.9, 9e-7))
    with pytest.raises(epsvec.PrivacyError, match="shots_eps"):
        epsvec.synthesize(RECORDS, 2, eps=1.0, labels=LABELS, model=model, fixed_shots="private", shots_eps=1.0)


def test_private_vote_picks_the_most_voted_candidates(model):
    """With little noise, records that copy candidates 5 and 9 elect them."""
    candidates = [g.text.strip() or "." for g in synth._zero_shot(model, None, None, synth.SHOT_CANDIDATES, 16, 7)]
    emb = synth._embed(model, candidates, 1, 16)
    distinct = [i for i in range(len(candidates)) if (emb @ emb[i] > 0.9999).sum() == 1]
    a, b = distinct[0], distinct[1]
    records = [candidates[a]] * 30 + [candidates[b]] * 20 + [candidates[distinct[2]]] * 5
    sigma = epsvec.privacy.gaussian_sigma(50.0, 1e-6)
    shots = synth._vote_shots(model, records, None, None, 2, sigma, 16, False, 7)
    assert shots == [candidates[a], candidates[b]]


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
    assert report["guarantee"]["eps"] == 4.0
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
    prompt = synth.ClassPlan(v.label, v.prompt["domain"], v.prompt["fixed_shots"]).prompt
    prompts = datasets.Dataset.from_dict({"prompt": [prompt] * 5})
    out = prompts.map(lambda batch: {"text": model.generate(batch["prompt"], steer=v, strength=0.06, max_new_tokens=5,
                                                             stop=epsvec.prompts.STOP, seed=0)},
                      batched=True, batch_size=4)
    assert len(out) == 5 and all(isinstance(t, str) for t in out["text"])


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


def test_poisson_sampling_per_class_has_its_own_rate_and_sigma(model):
    out = epsvec.synthesize(RECORDS * 3, 1, eps=2.0, labels=LABELS * 3, model=model, sample_size=4, **FAST)
    step = out.report["steps"][0]
    rates = {"pos": 4 / 15, "neg": 4 / 9}
    for c, q in rates.items():
        assert step["sample_rate"][c] == pytest.approx(q)
        assert step["sigma"][c] == pytest.approx(epsvec.privacy.gaussian_sigma(2.0, 1e-5, sample_rate=q))
    assert any("size" in item for item in out.report["public"]), "the report says the rate reveals N"
    kept_private = epsvec.synthesize(RECORDS * 3, 1, eps=2.0, labels=LABELS * 3, model=model, sample_rate=0.3, **FAST)
    assert kept_private.report["steps"][0]["sample_rate"] == {"neg": 0.3, "pos": 0.3}


def test_bad_sampling_settings_fail_before_any_budget_is_spent(model, monkeypatch):
    monkeypatch.setattr(synth, "private_steps", lambda *a, **k: pytest.fail("private steps ran"))
    with pytest.raises(ValueError, match="temperature"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, model=model, temperature=-1.0)
    with pytest.raises(epsvec.InvalidInputError, match="n must be"):
        epsvec.synthesize(RECORDS, 0, eps=4.0, model=model)
