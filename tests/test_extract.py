"""epsvec.extract: the release is the noisy, clipped, normalised sum the
docs describe; files round-trip; bad input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

import epsvec
from epsvec import prompts
from epsvec.recipes import DEPTH_RULE
from conftest import SENTENCES

PRIVATE = [
    "A tender, funny and wise film about growing old.",
    "The cast is wonderful and the script sparkles.",
    "Dull, overlong and badly edited.",
    "I laughed, I cried, I would see it again.",
    "A visual feast with a hollow heart.",
    "The best thriller of the year, by a mile.",
]
# Six test records are far too few for a useful vector at these budgets; the
# warning that says so is checked once, in test_too_few_records_warns.

PUBLIC = ["Some film about some people.", "A movie with scenes in it.", "It was a film.", "The story goes on."]


@pytest.fixture(scope="module")
def model(tiny_models):
    return epsvec.load_model(tiny_models["llama"], device="cpu")


def alone(model, prompt_ids, layers):
    """Pooled state (every token but the first) of one prompt, run by itself:
    the plain forward, no prefix cache, no batch."""
    weights = [[0.0] + [1.0] * (len(prompt_ids) - 1)]
    return model._engine.pooled_states([prompt_ids], layers, "mean", 1, weights)[0]


def exact_terms(model, records, negatives, layers):
    """Each record's term [n, layers, hidden]: its prompt's pooled state minus
    the mean over the negatives' prompts, built independently of extract."""
    prefix = prompts.prefix(None, None, [])
    prompt = lambda text: prompts.with_example(model, prefix, text, None, 800)[0].ids
    baseline = np.mean([alone(model, prompt(t), layers) for t in negatives], axis=0)
    return np.stack([alone(model, prompt(t), layers) - baseline for t in records])


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_huge_eps_gives_the_exact_mean_term(model):
    layers = [1, 2]
    terms = exact_terms(model, PRIVATE, PUBLIC, layers)
    clip = 1.01 * np.linalg.norm(terms.reshape(len(PRIVATE), -1), axis=1).max()  # no record is clipped
    v = epsvec.extract(PRIVATE, eps=1e8, model=model, negatives=PUBLIC, layers=layers, clip_norm=float(clip),
                       noise_seed=3, progress=False)
    want = unit(terms.sum(axis=0))
    for i, layer in enumerate(layers):
        assert float(v.directions[layer] @ want[i]) > 0.99999
        assert np.linalg.norm(v.directions[layer]) == pytest.approx(1.0, abs=1e-5)


def test_removing_any_record_removes_exactly_its_own_clipped_term(model):
    """The sensitivity argument, through the public API: with almost no noise
    and a clip that binds, dropping record k (first, middle or last) leaves the
    direction of the sum of the *other* records' own terms. Pairing record k
    with negative k mod M (the old scheme) re-pairs every later record instead."""
    records = PRIVATE + SENTENCES[:6]
    layers = [2]
    terms = exact_terms(model, records, PUBLIC, layers)[:, 0]
    clip = float(np.median(np.linalg.norm(terms, axis=1)))  # about half the records are clipped
    clipped = terms * np.minimum(1.0, clip / np.linalg.norm(terms, axis=1))[:, None]
    kw = dict(eps=1e8, model=model, negatives=PUBLIC, layers=layers, clip_norm=clip, noise_seed=1, progress=False)
    for k in (0, 1, len(records) // 2, len(records) - 1):
        v = epsvec.extract(records[:k] + records[k + 1 :], **kw).directions[2]
        want = unit(clipped.sum(axis=0) - clipped[k])
        assert float(v @ want) > 0.99999, f"removing record {k}"


def test_noise_makes_small_budgets_differ_from_the_signal(model):
    layers = [1]
    want = unit(exact_terms(model, PRIVATE, PUBLIC, layers).sum(axis=0))[0]
    v = epsvec.extract(PRIVATE, eps=0.5, model=model, negatives=PUBLIC, layers=layers, clip_norm=1.0, noise_seed=4,
                       progress=False)
    assert abs(float(v.directions[1] @ want)) < 0.5, "at eps 0.5 with 6 records the release is mostly noise"


def test_privacy_metadata_and_sigma(model):
    v = epsvec.extract(PRIVATE, eps=2.0, delta=1e-6, model=model, negatives=PUBLIC, layers=[1], clip_norm=5.0,
                       noise_seed=1, progress=False)
    p = v.privacy
    assert p["sigma"] == pytest.approx(epsvec.privacy.gaussian_sigma(2.0, 1e-6))
    assert (p["eps"], p["delta"], p["clip_norm"], p["sample_rate"], p["adjacency"]) == (
        2.0, 1e-6, {"None": 5.0}, 1.0, "add_remove")
    assert p["seeded"] is True and "records" not in json.dumps(p), "no record count may be stored"
    assert v.model["architecture"] == "LlamaForCausalLM" and len(v.model["weights_sha256"]) == 64
    assert v.array.shape == (1, 64) and v.layers == [1]
    unseeded = epsvec.extract(PRIVATE, eps=2.0, delta=1e-6, model=model, negatives=PUBLIC, layers=[1], clip_norm=5.0,
                              seed=1, progress=False)
    assert unseeded.privacy["seeded"] is False, "seed fixes the public randomness only"
    assert not np.allclose(unseeded.array, v.array), "OS noise must differ from the seeded draw"


def test_classes_are_declared_every_class_gets_a_vector(model):
    kw = dict(eps=3.0, model=model, negatives=PUBLIC, layers=[0, 2], clip_norm=10.0, noise_seed=9, progress=False)
    labels = ["pos", "pos", "neg", "pos", "neg", "pos"]
    a = epsvec.extract(PRIVATE, labels=labels, classes=["pos", "neg", "mixed"], **kw)
    b = epsvec.extract(PRIVATE, labels=labels, classes=["pos", "neg", "mixed"], **kw)
    assert list(a) == ["pos", "neg", "mixed"] and a["pos"].label == "pos"
    assert np.array_equal(a["pos"].array, b["pos"].array)
    assert not np.allclose(a["pos"].array, a["neg"].array)
    assert a["mixed"].array.shape == a["pos"].array.shape, "a declared class without records: a pure-noise vector"
    with pytest.raises(epsvec.InvalidInputError, match="need classes"):
        epsvec.extract(PRIVATE, labels=labels, **kw)
    # A label outside the classes is refused before any model work (no model is even loaded).
    with pytest.raises(epsvec.InvalidInputError, match=r"record 2 has the label 'neg'"):
        epsvec.extract(PRIVATE, labels=labels, classes=["pos"], **{**kw, "model": "/no/such/model"})


def test_auto_layers_clip_norm_and_negatives_are_public(model):
    v = epsvec.extract(PRIVATE, eps=4.0, model=model, seed=2, progress=False, negative_max_new_tokens=8)
    assert v.layers == DEPTH_RULE.layers(3) == [1, 2]
    assert v.privacy["clip_norm"]["None"] > 0 and "public" in v.privacy["clip_norm_source"]
    # clip_norm="auto" does not look at the private texts: other private texts, same public draws.
    w = epsvec.extract(SENTENCES, eps=4.0, model=model, seed=2, progress=False, negative_max_new_tokens=8)
    assert w.privacy["clip_norm"] == v.privacy["clip_norm"]
    assert DEPTH_RULE.layers(30) == [14, 15, 16, 17]


def test_poisson_sampling_happens_inside_the_release(model):
    kw = dict(eps=2.0, model=model, negatives=PUBLIC, layers=[1], clip_norm=5.0, progress=False)
    sampled = epsvec.extract(PRIVATE * 10, sample_rate=0.2, noise_seed=1, **kw)
    assert sampled.privacy["sample_rate"] == pytest.approx(0.2)
    assert sampled.privacy["sigma"] == pytest.approx(epsvec.privacy.gaussian_sigma(2.0, 1e-5, sample_rate=0.2))
    again = epsvec.extract(PRIVATE * 10, sample_rate=0.2, noise_seed=1, **kw)
    other = epsvec.extract(PRIVATE * 10, sample_rate=0.2, noise_seed=2, **kw)
    assert np.array_equal(sampled.array, again.array) and not np.allclose(sampled.array, other.array)
    assert sampled.privacy == other.privacy, "nothing about the sample is in the metadata"


def test_neighbouring_datasets_release_identical_metadata(model, tmp_path):
    """One long record more (cut to max_example_tokens): the curator-only
    diagnostics count it, and the files differ in their noisy directions only."""
    long = " ".join(["This is a sentence about the film."] * 40)
    kw = dict(eps=4.0, model=model, layers=[1], max_example_tokens=80, seed=5, progress=False,
              negative_max_new_tokens=8, labels=None)
    small = epsvec.extract(PRIVATE, **kw)
    with epsvec.curator_diagnostics() as diagnostics:
        large = epsvec.extract(PRIVATE + [long], **kw)
    assert diagnostics.classes[0].truncated == 1
    small.save(tmp_path / "a.safetensors")
    large.save(tmp_path / "b.safetensors")
    meta = lambda path: epsvec._epsvec.load_vector(str(path))[1]
    assert meta(tmp_path / "a.safetensors") == meta(tmp_path / "b.safetensors")
    assert not np.array_equal(small.array, large.array)


def test_save_load_and_mismatch(model, tiny_models, tmp_path):
    v = epsvec.extract(PRIVATE, eps=4.0, model=model, negatives=PUBLIC, layers=[1, 2], clip_norm=10.0, noise_seed=1,
                       progress=False)
    path = tmp_path / "v.safetensors"
    v.save(path)
    w = epsvec.DatasetVector.load(path)
    assert np.array_equal(w.array, v.array) and w.privacy == v.privacy and w.model == v.model and w.layers == v.layers
    assert model.generate("hi", max_new_tokens=3, temperature=0, steer=w, strength=2.0)
    other = epsvec.load_model(tiny_models["qwen3"], device="cpu")
    with pytest.raises(epsvec.VectorModelMismatchError, match="another model"):
        other.generate("hi", max_new_tokens=3, steer=w)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(epsvec.CorruptFileError):
        epsvec.DatasetVector.load(path)
    path.write_bytes(b"not a vector")
    with pytest.raises(epsvec.CorruptFileError):
        epsvec.DatasetVector.load(path)


@pytest.mark.parametrize(
    "kwargs, error, needle",
    [
        (dict(texts=[]), epsvec.InvalidInputError, "empty"),
        (dict(texts=["ok", 3]), TypeError, r"texts\[1\]"),
        (dict(texts="a string"), TypeError, "list of strings"),
        (dict(texts=["ok", "  "]), epsvec.InvalidInputError, r"texts\[1\] is empty"),
        (dict(texts=["ok", "bad \ud800"]), epsvec.InvalidInputError, r"texts\[1\] is not valid Unicode"),
        (dict(labels=["a"], classes=["a"]), epsvec.InvalidInputError, "labels has 1"),
        (dict(eps=0.0), epsvec.PrivacyError, "eps"),
        (dict(eps=-1.0), epsvec.PrivacyError, "-1"),
        (dict(eps=float("inf")), epsvec.PrivacyError, "inf"),
        (dict(delta=0.0), epsvec.PrivacyError, "delta"),
        (dict(delta=1.0), epsvec.PrivacyError, "delta"),
        (dict(sample_rate=1.5), epsvec.PrivacyError, "sample_rate"),
        (dict(sample_rate=0.0), epsvec.PrivacyError, "sample_rate"),
        (dict(noise_seed=-1), epsvec.InvalidInputError, "noise_seed"),
        (dict(labels=["a"] * 6, classes="ab"), TypeError, "classes"),
        (dict(labels=["a"] * 6, classes=["a", "a"]), epsvec.InvalidInputError, "distinct"),
        (dict(pool="max"), epsvec.InvalidInputError, "pool"),
        (dict(layers=[7]), epsvec.InvalidInputError, "layers"),
        (dict(clip_norm=-2.0, model="/no/such/model"), epsvec.InvalidInputError, "clip_norm"),
        (dict(adjacency="swap"), epsvec.PrivacyError, "swap"),
        (dict(negatives=["only one"], clip_norm="auto"), epsvec.InvalidInputError, "distinct public negatives"),
    ],
)
def test_bad_input(model, kwargs, error, needle):
    args = dict(texts=PRIVATE, eps=1.0, model=model, negatives=PUBLIC, layers=[1], progress=False)
    args.update(kwargs)
    with pytest.raises(error, match=needle):
        epsvec.extract(**args)


@pytest.mark.parametrize("variant", ["llama", "qwen2", "mistral"])
def test_shared_prompt_prefix_runs_once_with_the_same_result(tiny_models, variant):
    """Fixed-shot prompts share a long prefix; the engine runs it once and
    reuses its keys/values. Pooled states must equal one-text-at-a-time runs."""
    model = epsvec.load_model(tiny_models[variant], device="cpu")
    prefix = prompts.prefix("reviews", "pos", PUBLIC)
    pieces = [prompts.with_example(model, prefix, t, "pos", 800)[0] for t in PRIVATE]
    ids = [p.ids for p in pieces]
    assert len(ids[0]) > 40
    for pool, weights in (("mean", None), ("mean", [[0.0] + [1.0] * (len(i) - 1) for i in ids]),
                          ("mean", [[1.0 if j in range(len(i))[p.example] else 0.0 for j in range(len(i))]
                                    for i, p in zip(ids, pieces)]), ("last", None)):
        shared = model._engine.pooled_states(ids, [0, 2], pool, 4, weights)
        alone = np.concatenate([model._engine.pooled_states([i], [0, 2], pool, 1, None if weights is None else [w])
                                for i, w in zip(ids, weights or [None] * len(ids))])
        np.testing.assert_allclose(shared, alone, rtol=1e-4, atol=1e-4)


def test_a_padded_tokenizer_json_cannot_couple_records(tiny_models, tmp_path):
    """Some tokenizer.json files ask for batch padding; a record's ids must not
    grow with the longest record tokenized beside it."""
    import shutil

    padded = tmp_path / "padded"
    shutil.copytree(tiny_models["llama"], padded)
    spec = json.loads((padded / "tokenizer.json").read_text())
    spec["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None, "pad_id": 0,
                       "pad_type_id": 0, "pad_token": "<pad>"}
    spec["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
    (padded / "tokenizer.json").write_text(json.dumps(spec))
    model = epsvec.load_model(padded, device="cpu")
    short, long = PRIVATE[0], " ".join(SENTENCES)
    alone = model.tokenize([short])[0]
    assert model.tokenize([short, long])[0] == alone and len(model.tokenize([long])[0]) > 8
