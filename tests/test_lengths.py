"""The DP length histogram (epsvec.lengths): what it releases, what it
spends, and how samples draw their least length from it."""

from __future__ import annotations

import numpy as np
import pytest

import epsvec
from epsvec import lengths, synthesis
from epsvec.privacy import gaussian_sigma

COUNTS = [3] * 30 + [20] * 10 + [100] * 5  # 100 tokens: past the cap, in the last bin
BINS = lengths.bins_of(COUNTS, 64)


def test_the_histogram_follows_the_records_lengths_under_little_noise():
    hist, step = lengths.release_lengths(BINS, 64, (1000.0, 1e-5), "add_remove", noise_seed=1, label="pos")
    assert hist.edges == [0, 8, 16, 24, 32, 40, 48, 56, 64]
    want = np.zeros(8)
    want[[0, 2, 7]] = [30, 10, 5]
    np.testing.assert_allclose(hist.weights, want / want.sum(), atol=0.02)
    assert step.name == "length histogram" and step.clip_norm == {"pos": 1.0}
    assert step.sigma == pytest.approx(gaussian_sigma(1000.0, 1e-5))


@pytest.mark.parametrize("adjacency, rate", [("add_remove", 1.0), ("substitution", 1.0), ("add_remove", 0.3)])
def test_the_noise_is_calibrated_to_the_budget(adjacency, rate):
    _, step = lengths.release_lengths(BINS, 64, (0.5, 1e-6), adjacency, sample_rate=rate, noise_seed=2)
    assert (step.eps, step.delta, step.sample_rate, step.adjacency) == (0.5, 1e-6, rate, adjacency)
    assert step.sigma == pytest.approx(gaussian_sigma(0.5, 1e-6, sample_rate=rate, adjacency=adjacency))
    assert ("Poisson sample" in step.mechanism) == (rate < 1)
    assert step.seeded, "a test seed voids the guarantee, and the report says so"
    fresh = [lengths.release_lengths(BINS, 64, (4.0, 1e-6), adjacency)[0].weights
             for _ in range(2)]
    assert fresh[0] != fresh[1], "without a noise seed the noise is fresh"


def test_bins_without_records_do_not_keep_their_noise():
    """Clipping noise at 0 alone would give every empty bin about 0.4 sigma of
    mass and pull samples long; less one std it keeps about 0.08 sigma."""
    empty = []
    for seed in range(20):
        hist, step = lengths.release_lengths([0] * 60, 64, (1.0, 1e-5), "add_remove", noise_seed=seed)
        empty.append(sum(hist.weights[1:]))
    assert step.sigma > 3 and np.mean(empty) < 0.05
    nothing = lengths.LengthHistogram([0, 8, 16], [0.0, 0.0])
    assert nothing.bounds(1, range(5)) == [(0, None)] * 5, "no bin stood out of the noise: no bounds"


def test_each_sample_draws_its_bounds_from_its_own_stream():
    hist = lengths.LengthHistogram([0, 8, 16, 24], [0.0, 0.0, 1.0])
    bounds = hist.bounds(7, range(50))
    for least, end in bounds:
        assert int(lengths.MIN_FRACTION * 16) <= least <= int(lengths.MIN_FRACTION * 24)
        assert int(lengths.END_FRACTION * 16) <= end <= int(lengths.END_FRACTION * 24) and least <= end
    assert len(set(bounds)) > 1
    assert hist.bounds(7, [3, 41]) == [bounds[3], bounds[41]], "a split or resumed run draws the same"
    assert hist.bounds(8, range(50)) != bounds
    assert lengths.LengthHistogram.from_dict(hist.to_dict()) == hist
    for bad in ({"edges": [0, 8], "weights": [1.0, 1.0]}, {"edges": [8, 0], "weights": [1.0]},
                {"edges": [0, 8], "weights": [float("nan")]}, {"edges": [0, 8], "weights": [-1.0]}):
        with pytest.raises(ValueError, match="not a length histogram"):
            lengths.LengthHistogram.from_dict(bad)


def test_the_report_charges_the_histogram_and_the_vector_gets_the_rest(tiny_models):
    model = epsvec.load_model(tiny_models["llama"], device="cpu")
    texts = ["A tender, funny and wise film.", "Dull and overlong.", "The cast is wonderful.", "Flat."]
    kw = dict(labels=["pos", "neg", "pos", "neg"], classes=["neg", "pos"], model=model, max_new_tokens=6,
              progress=False, seed=3, noise_seed=4)
    out = epsvec.synthesize(texts, 2, eps=4.0, **kw)
    by_name = {s.name: s for s in out.report.steps}
    assert set(by_name) == {"length histogram", "dataset vector"}
    assert (by_name["length histogram"].eps, by_name["length histogram"].delta) == pytest.approx((0.5, 1e-6)), "eps / 8"
    assert by_name["dataset vector"].eps == pytest.approx(3.5)
    assert (out.report.eps, out.report.delta) == pytest.approx((4.0, 1e-5))
    assert set(by_name["length histogram"].clip_norm) == {"neg", "pos"}, "one step for the disjoint classes"
    assert all(p.lengths is not None for p in out.plans) and "lengths" in out.report.generation
    plain = epsvec.synthesize(texts, 2, eps=4.0, length_eps=None, **kw)
    assert [s.name for s in plain.report.steps] == ["dataset vector"] and "lengths" not in plain.report.generation
    zero = epsvec.synthesize(texts, 2, eps=4.0, method="zero_shot", **kw)
    assert zero.report.steps == [] and all(p.lengths is None for p in zero.plans), "baselines read no record"
    with pytest.raises(epsvec.PrivacyError, match="length_eps"):
        epsvec.synthesize(texts, 2, eps=0.4, length_eps=0.4, **kw)
    with pytest.raises(epsvec.PrivacyError, match="below eps = 1"):  # a baseline too stays within its budget
        epsvec.synthesize(texts, 2, eps=1.0, method="fixed_shot", fixed_shots="private", shots_eps=0.6,
                          length_eps=0.6, **kw)
    with pytest.raises(epsvec.InvalidInputError, match="max_new_tokens"):
        synthesis.private_steps(texts, 4.0, **{**kw, "max_new_tokens": 0})


def test_samples_follow_the_released_lengths(default_model):
    """Held to a long minimum, the default model writes far past where it
    stops on its own (at its first newline)."""
    plan = synthesis.ClassPlan(None, "tweets", [])
    kw = dict(seed=11, strength=0.0, temperature=1.0, top_p=1.0, max_new_tokens=48, tidy=False)
    free = synthesis.generate_for_class(default_model, plan, range(12), **kw)
    long = lengths.LengthHistogram([0, 32, 40, 48], [0.0, 1.0, 0.0])
    held = synthesis.generate_for_class(default_model, synthesis.ClassPlan(None, "tweets", [], lengths=long),
                                        range(12), **kw)
    tokens = lambda texts: [len(ids) for ids in default_model.tokenize(texts, add_special_tokens=False)]
    assert np.median(tokens(free)) < 20
    assert min(tokens(held)) >= int(lengths.MIN_FRACTION * 32) - 2  # re-tokenising may merge a token or two
