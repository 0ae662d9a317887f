"""epsvec.extract: the release is the noisy, clipped, normalised sum the
docs describe; files round-trip; bad input is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

import epsvec
from epsvec import prompts
from epsvec.extract import auto_layers
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
pytestmark = pytest.mark.filterwarnings("ignore:.*the vector will be mostly noise")

PUBLIC = ["Some film about some people.", "A movie with scenes in it.", "It was a film.", "The story goes on."]


@pytest.fixture(scope="module")
def model(tiny_models):
    return epsvec.load_model(tiny_models["llama"], device="cpu")


def exact_differences(model, records, negatives, layers):
    """Per-record differences [n, layers, hidden], built independently of extract."""
    prefix = prompts.prefix(None, None, [])
    pieces = []
    for k, text in enumerate(records):
        pieces.append(prompts.with_example(model, prefix, text, None, 800)[0])
        pieces.append(prompts.with_example(model, prefix, negatives[k % len(negatives)], None, 800)[0])
    weights = [[0.0] + [1.0] * (len(p.ids) - 1) for p in pieces]
    states = model._engine.pooled_states([p.ids for p in pieces], layers, "mean", 8, weights)
    return states[0::2] - states[1::2]


def exact_direction(model, records, negatives, layers):
    total = exact_differences(model, records, negatives, layers).sum(axis=0)
    return total / np.linalg.norm(total, axis=1, keepdims=True)


def test_huge_eps_gives_the_exact_mean_difference(model):
    layers = [1, 2]
    diffs = exact_differences(model, PRIVATE, PUBLIC, layers)
    clip = 1.01 * np.linalg.norm(diffs.reshape(len(PRIVATE), -1), axis=1).max()  # no record is clipped
    v = epsvec.extract(PRIVATE, eps=2e4, model=model, negatives=PUBLIC, layers=layers, clip_norm=float(clip), seed=3,
                       progress=False)
    want = exact_direction(model, PRIVATE, PUBLIC, layers)
    for i, layer in enumerate(layers):
        assert float(v.directions[layer] @ want[i]) > 0.999
        assert np.linalg.norm(v.directions[layer]) == pytest.approx(1.0, abs=1e-5)


def test_noise_makes_small_budgets_differ_from_the_signal(model):
    layers = [1]
    want = exact_direction(model, PRIVATE, PUBLIC, layers)[0]
    v = epsvec.extract(PRIVATE, eps=0.5, model=model, negatives=PUBLIC, layers=layers, clip_norm=1.0, seed=4,
                       progress=False)
    assert abs(float(v.directions[1] @ want)) < 0.5, "at eps 0.5 with 6 records the release is mostly noise"


def test_privacy_metadata_and_sigma(model):
    v = epsvec.extract(PRIVATE, eps=2.0, delta=1e-6, model=model, negatives=PUBLIC, layers=[1], clip_norm=5.0,
                       seed=1, progress=False)
    p = v.privacy
    assert p["sigma"] == pytest.approx(epsvec.privacy.gaussian_sigma(2.0, 1e-6))
    assert (p["eps"], p["delta"], p["clip_norm"], p["sample_rate"], p["adjacency"]) == (2.0, 1e-6, 5.0, 1.0, "add_remove")
    assert p["seeded"] is True and "records" not in p, "the exact record count is private and must not be stored"
    assert v.model["architecture"] == "LlamaForCausalLM" and len(v.model["weights_sha256"]) == 64
    assert v.array.shape == (1, 64) and v.layers == [1]
    unseeded = epsvec.extract(PRIVATE, eps=2.0, delta=1e-6, model=model, negatives=PUBLIC, layers=[1], clip_norm=5.0,
                              progress=False)
    assert unseeded.privacy["seeded"] is False
    assert not np.allclose(unseeded.array, v.array), "OS noise must differ from the seeded draw"


def test_same_seed_same_vector_and_labels_give_one_vector_per_class(model):
    kw = dict(eps=3.0, model=model, negatives=PUBLIC, layers=[0, 2], clip_norm=10.0, seed=9, progress=False)
    labels = ["pos", "pos", "neg", "pos", "neg", "pos"]
    a = epsvec.extract(PRIVATE, labels=labels, **kw)
    b = epsvec.extract(PRIVATE, labels=labels, **kw)
    assert set(a) == {"pos", "neg"} and a["pos"].label == "pos"
    assert np.array_equal(a["pos"].array, b["pos"].array)
    assert not np.allclose(a["pos"].array, a["neg"].array)


def test_auto_layers_clip_norm_and_negatives_are_public(model):
    v = epsvec.extract(PRIVATE, eps=4.0, model=model, seed=2, progress=False, negative_max_new_tokens=8)
    assert v.layers == auto_layers(3) == [1, 2]
    assert v.privacy["clip_norm"] > 0 and "public" in v.privacy["clip_norm_source"]
    # clip_norm="auto" does not look at the private texts: other private texts, same public draws.
    w = epsvec.extract(SENTENCES, eps=4.0, model=model, seed=2, progress=False, negative_max_new_tokens=8)
    assert w.privacy["clip_norm"] == v.privacy["clip_norm"]
    assert auto_layers(30) == [14, 15, 16, 17]


def test_poisson_sample_rate(model):
    n, q = 100_000, 0.03
    kept = epsvec._epsvec.poisson_sample(n, q, 5)
    assert abs(len(kept) - n * q) < 6 * math.sqrt(n * q * (1 - q))
    assert kept == sorted(set(kept)) and kept != epsvec._epsvec.poisson_sample(n, q, 6)
    sampled = epsvec.extract(PRIVATE * 10, eps=2.0, model=model, negatives=PUBLIC, layers=[1], clip_norm=5.0,
                             sample_size=12, seed=1, progress=False)
    assert sampled.privacy["sample_rate"] == pytest.approx(0.2)
    assert sampled.privacy["sigma"] == pytest.approx(epsvec.privacy.gaussian_sigma(2.0, 1e-5, sample_rate=0.2))


def test_save_load_and_mismatch(model, tiny_models, tmp_path):
    v = epsvec.extract(PRIVATE, eps=4.0, model=model, negatives=PUBLIC, layers=[1, 2], clip_norm=10.0, seed=1,
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


def test_truncation_is_counted(model):
    long = " ".join(["This is a sentence about the film."] * 40)
    v = epsvec.extract([long, PRIVATE[0]], eps=4.0, model=model, negatives=PUBLIC, layers=[1], clip_norm=10.0,
                       max_example_tokens=80, seed=1, progress=False)
    assert v.privacy["truncated_examples"] == 1


@pytest.mark.parametrize(
    "kwargs, error, needle",
    [
        (dict(texts=[]), epsvec.InvalidInputError, "empty"),
        (dict(texts=["ok", 3]), TypeError, r"texts\[1\]"),
        (dict(texts="a string"), TypeError, "list of strings"),
        (dict(texts=["ok", "  "]), epsvec.InvalidInputError, r"texts\[1\] is empty"),
        (dict(labels=["a"]), epsvec.InvalidInputError, "labels has 1"),
        (dict(eps=0.0), epsvec.PrivacyError, "eps"),
        (dict(eps=-1.0), epsvec.PrivacyError, "-1"),
        (dict(eps=float("inf")), epsvec.PrivacyError, "inf"),
        (dict(delta=0.0), epsvec.PrivacyError, "delta"),
        (dict(delta=1.0), epsvec.PrivacyError, "delta"),
        (dict(sample_size=100), epsvec.PrivacyError, "sample_size"),
        (dict(pool="max"), epsvec.InvalidInputError, "pool"),
        (dict(layers=[7]), epsvec.InvalidInputError, "layers"),
        (dict(clip_norm=-2.0), epsvec.InvalidInputError, "clip_norm"),
        (dict(adjacency="swap"), epsvec.PrivacyError, "swap"),
        (dict(negatives=["only one"], clip_norm="auto"), epsvec.InvalidInputError, "distinct public negatives"),
    ],
)
def test_bad_input(model, kwargs, error, needle):
    args = dict(texts=PRIVATE, eps=1.0, model=model, negatives=PUBLIC, layers=[1], progress=False)
    args.update(kwargs)
    with pytest.raises(error, match=needle):
        epsvec.extract(**args)


def test_large_delta_warns(model):
    with pytest.warns(UserWarning, match="exceeds 1/N"):
        epsvec.extract(PRIVATE, eps=1.0, delta=0.5, model=model, negatives=PUBLIC, layers=[1], clip_norm=1.0,
                       progress=False)


def test_too_few_records_warns(model):
    with pytest.warns(UserWarning, match="mostly noise"):
        epsvec.extract(PRIVATE, eps=1.0, model=model, negatives=PUBLIC, layers=[1], clip_norm=1.0, progress=False)


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
