"""End-to-end empirical privacy audit of the shipped release path.

Two neighbouring datasets (a record removed from the middle, or replaced)
go through the real pipeline (prompts, the model on each record, the Rust
release with its clipping, Poisson sample and noise) many times each; a
threshold test on the released direction gives a Clopper-Pearson lower
bound on eps. It must stay below the claim, and must exceed it when the
pipeline is broken on purpose: sigma 0.8x too small, or the old positional
pairing of records with negatives. Trials with ``sample_rate = 1`` share
one read of the records and draw independent noise (the eps-sweep path);
Poisson trials run the whole class extraction once each.

The claim audited is (eps, delta) = (1, 0.1): a large delta puts the
informative thresholds in the bulk of the distribution, where a few
thousand trials measure them well enough to see a 0.8x sigma.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from scipy.stats import beta

import epsvec
from epsvec import prompts
from epsvec.extract import ClassPrompts, extract_class

extract_module = importlib.import_module("epsvec.extract")  # the module, not the function

EPS, DELTA, ALPHA = 1.0, 0.1, 0.01
LAYER = 2
PUBLIC = ["Some film about some people.", "A movie with scenes in it.", "It was a film.", "The story goes on."]
OTHERS = ["A tender, funny and wise film about growing old.", "Dull, overlong and badly edited.",
          "The cast is wonderful and the script sparkles.", "I laughed, I cried, I would see it again."]
TARGET = "zzz qqq ### 1234 !!! ??? <<< >>> %%% $$$ ~~~ ^^^"  # an outlier record


@pytest.fixture(scope="module")
def model(tiny_models):
    return epsvec.load_model(tiny_models["llama"], device="cpu")


def releases(model, records, trials, *, seed, sample_rate=1.0, adjacency="add_remove", negatives=PUBLIC, clip=1.0):
    """``trials`` released directions ``[trials, hidden]`` of the real class extraction on ``records``."""
    plan = ClassPrompts.build(model, None, None, [], records, 800, prompts.PromptFormat())
    kw = dict(delta=DELTA, negatives=negatives, layers=[LAYER], clip_norm=clip, pool="mean", sample_rate=sample_rate,
              adjacency=adjacency, batch_size=8, progress=False, seed=None, temperature=1.0, max_new_tokens=8,
              num_negatives=4)
    if sample_rate == 1.0:
        vectors = extract_class(model, plan, eps=[EPS] * trials, noise_seed=seed, **kw)
    else:
        vectors = [extract_class(model, plan, eps=[EPS], noise_seed=seed + i, **kw)[0] for i in range(trials)]
    return np.stack([v.directions[LAYER] for v in vectors]).astype(np.float64)


def term(model, text, negatives=PUBLIC):
    """A record's term by the plain forward (for the test statistic's direction only)."""
    prefix = prompts.prefix(None, None, [])
    def pooled(t):
        ids = prompts.with_example(model, prefix, t, None, 800)[0].ids
        return model._engine.pooled_states([ids], [LAYER], "mean", 1, [[0.0] + [1.0] * (len(ids) - 1)])[0, 0]
    return pooled(text) - np.mean([pooled(n) for n in negatives], axis=0)


def eps_lower_bound(without: np.ndarray, with_: np.ndarray, delta: float = DELTA, alpha: float = ALPHA) -> float:
    """Clopper-Pearson lower bound on eps from threshold tests ``T > t`` on
    scores of the two datasets, both directions, Bonferroni over thresholds."""
    ts = np.quantile(np.concatenate([without, with_]), np.linspace(0.02, 0.98, 25))
    a = alpha / (2 * len(ts))
    lo = lambda k, n: 0.0 if k == 0 else beta.ppf(a, k, n - k + 1)
    hi = lambda k, n: 1.0 if k == n else beta.ppf(1 - a, k + 1, n - k)
    best = 0.0
    for t in ts:
        for p, q in ((with_, without), (without, with_)):  # P_D(E) <= e^eps P_D'(E) + delta, either way round
            k_p, k_q = int((p > t).sum()), int((q > t).sum())
            for hit_p, hit_q in ((k_p, k_q), (len(p) - k_p, len(q) - k_q)):
                num = lo(hit_p, len(p)) - delta
                if num > 0:
                    best = max(best, float(np.log(num / hi(hit_q, len(q)))))
    return best


def audit(model, d, d_prime, direction, trials, **kw) -> float:
    u = direction / np.linalg.norm(direction)
    return eps_lower_bound(releases(model, d_prime, trials, seed=1, **kw) @ u,
                           releases(model, d, trials, seed=2, **kw) @ u)


def test_removing_a_middle_record_stays_within_the_claim_and_a_small_sigma_is_caught(model, monkeypatch):
    d = OTHERS[:2] + [TARGET] + OTHERS[2:]
    d_prime = OTHERS
    direction = term(model, TARGET)
    held = audit(model, d, d_prime, direction, 6000)
    assert held < EPS, f"measured eps {held:.3f} above the claim {EPS}"
    sigma = extract_module.gaussian_sigma
    monkeypatch.setattr(extract_module, "gaussian_sigma", lambda *a, **k: 0.8 * sigma(*a, **k))
    broken = audit(model, d, d_prime, direction, 6000)
    assert broken > EPS, f"the audit cannot see a sigma 0.8x too small (measured {broken:.3f})"


def test_substitution_stays_within_the_claim(model):
    replacement = min(OTHERS[:2] + ["Ok."], key=lambda t: float(term(model, t) @ term(model, TARGET)))
    d = OTHERS[:2] + [TARGET] + OTHERS[2:]
    d_sub = OTHERS[:2] + [replacement] + OTHERS[2:]
    measured = audit(model, d, d_sub, term(model, TARGET) - term(model, replacement), 6000, adjacency="substitution")
    assert measured < EPS


def test_the_old_positional_pairing_is_caught(model, monkeypatch):
    """Record k paired with negative k mod M: removing the first record
    re-pairs all the others. With records that copy a negative alternating
    with ordinary ones, one record then moves the clipped sum by about 5 C
    (the review's worked example has 29 C). Reinstated here on top of the
    real release, the audit must report far more than the claim; the shipped
    pipeline on the same datasets must not."""
    negatives = ["Ok.", " ".join(["A long, rambling account of the plot, scene by scene, with every actor named."] * 3)]
    d = [TARGET] + [negatives[0], "It was a film."] * 8
    d_prime = d[1:]
    prefix = prompts.prefix(None, None, [])
    pooled = lambda ids: model._engine.pooled_states([ids], [LAYER], "mean", 1, [[0.0] + [1.0] * (len(ids) - 1)])[0, 0]
    states_of = lambda texts: np.stack([pooled(p.ids) for p in prompts.with_examples(model, prefix, texts, None, 800)[1]])
    negative_states = states_of(negatives)
    clip = 0.2 * float(np.linalg.norm(negative_states[1] - negative_states[0]))
    shipped = audit(model, d, d_prime, term(model, TARGET, negatives), 3000, negatives=negatives, clip=clip)
    assert shipped < EPS

    def paired_terms(states):
        rows = states - negative_states[np.arange(len(states)) % len(negative_states)]
        norms = np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-30)
        return rows, (rows * np.minimum(1.0, clip / norms)).sum(axis=0)

    shift = paired_terms(states_of(d))[1] - paired_terms(states_of(d_prime))[1]
    assert np.linalg.norm(shift) > 4 * clip, "the datasets make the pairing's sensitivity several C"
    real = extract_module._epsvec

    class Paired:
        """epsvec._epsvec whose release computes the old paired terms."""

        def __getattr__(self, name):
            return getattr(real, name)

        def PrivateRelease(self, *args):
            release = real.PrivateRelease(*args)

            class Release:
                def offer_prompts(self, engine, prefix_ids, tails, *rest):
                    rows, _ = paired_terms(np.stack([pooled(prefix_ids + t) for t in tails]))
                    release.offer_rows(np.ascontiguousarray(rows, dtype=np.float32))

                def __getattr__(self, name):
                    return getattr(release, name)

            return Release()

    monkeypatch.setattr(extract_module, "_epsvec", Paired())
    paired = audit(model, d, d_prime, shift, 3000, negatives=negatives, clip=clip)
    assert paired > 2 * EPS, f"the audit cannot see the positional pairing (measured {paired:.3f})"


def test_poisson_sampling_stays_within_the_claim(model):
    d = OTHERS[:2] + [TARGET] + OTHERS[2:]
    measured = audit(model, d, OTHERS, term(model, TARGET), 400, sample_rate=0.5)
    assert measured < EPS


@pytest.mark.slow
def test_poisson_sampling_long_audit_and_power(model, monkeypatch):
    d = OTHERS[:2] + [TARGET] + OTHERS[2:]
    direction = term(model, TARGET)
    assert audit(model, d, OTHERS, direction, 5000, sample_rate=0.5) < EPS
    sigma = extract_module.gaussian_sigma
    monkeypatch.setattr(extract_module, "gaussian_sigma", lambda *a, **k: 0.5 * sigma(*a, **k))
    assert audit(model, d, OTHERS, direction, 5000, sample_rate=0.5) > EPS
