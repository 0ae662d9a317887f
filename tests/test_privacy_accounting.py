"""The accountant against Google's dp-accounting (PLD), an independent
implementation, at points drawn at random over the documented range."""

from __future__ import annotations

import math
import random
import warnings

import pytest

import epsvec
from epsvec.privacy import gaussian_delta, gaussian_epsilon, gaussian_sigma

VDI = 1e-3  # PLD discretisation; its pessimistic sigma sits <= ~1e-5 above the exact one


def pld_delta(eps: float, sigma: float, q: float, relation: str) -> float:
    from dp_accounting import dp_event, pld
    from dp_accounting.privacy_accountant import NeighboringRelation

    neighbours = {"add_remove": NeighboringRelation.ADD_OR_REMOVE_ONE, "substitution": NeighboringRelation.REPLACE_ONE}
    accountant = pld.PLDAccountant(neighboring_relation=neighbours[relation], value_discretization_interval=VDI)
    event = dp_event.GaussianDpEvent(sigma)
    accountant.compose(dp_event.PoissonSampledDpEvent(q, event) if q < 1 else event)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return accountant.get_delta(eps)


def pld_sigma(eps: float, delta: float, q: float, start: float, relation: str) -> float:
    """dp-accounting's sigma: root of ln delta_PLD(eps; sigma) = ln delta (secant in ln sigma)."""
    f = lambda ls: math.log(max(pld_delta(eps, math.exp(ls), q, relation), 1e-300)) - math.log(delta)
    x0, x1 = math.log(start), math.log(start) + 1e-3
    f0, f1 = f(x0), f(x1)
    for _ in range(8):
        if f1 == f0:
            break
        x2 = min(max(x1 - f1 * (x1 - x0) / (f1 - f0), x1 - 1.0), x1 + 1.0)
        if abs(x2 - x1) < 1e-10:
            return math.exp(x2)
        x0, f0, x1 = x1, f1, x2
        f1 = f(x1)
    return math.exp(x1)


def random_points(n: int, seed: int):
    """eps in [0.1, 20], delta in [1e-8, 1e-3], q in [1e-4, 1], log-uniform; a quarter at q = 1."""
    rng = random.Random(seed)
    points = []
    while len(points) < n:
        eps = math.exp(rng.uniform(math.log(0.1), math.log(20.0)))
        delta = math.exp(rng.uniform(math.log(1e-8), math.log(1e-3)))
        q = 1.0 if rng.random() < 0.25 else math.exp(rng.uniform(math.log(1e-4), 0.0))
        if delta < q / 2:
            points.append((eps, delta, q))
    return points


@pytest.mark.parametrize("relation, n, seed", [("add_remove", 16, 2026), ("substitution", 6, 7)])
def test_sigma_agrees_with_dp_accounting(relation, n, seed):
    for eps, delta, q in random_points(n, seed):
        sigma = gaussian_sigma(eps, delta, sample_rate=q, adjacency=relation)
        reference = pld_sigma(eps, delta, q, sigma, relation)
        assert abs(sigma - reference) / reference < 1e-4, (eps, delta, q, sigma, reference)


def test_method_reference_point():
    # METHOD.md: Yelp, 500 of 280,000 records, eps 4.9, delta 9e-6, one joint release.
    assert gaussian_sigma(4.9, 9e-6, sample_rate=500 / 280_000) == pytest.approx(0.339, abs=5e-4)


def test_inverse_functions_round_trip():
    for eps, delta, q in random_points(10, 3):
        sigma = gaussian_sigma(eps, delta, sample_rate=q)
        assert gaussian_epsilon(sigma, delta, sample_rate=q) == pytest.approx(eps, rel=1e-7)
        assert gaussian_delta(sigma, eps, sample_rate=q) == pytest.approx(delta, rel=1e-6)


def test_substitution_doubles_sensitivity_without_sampling():
    a = gaussian_sigma(2.0, 1e-5)
    assert gaussian_sigma(2.0, 1e-5, adjacency="substitution") == pytest.approx(2 * a, rel=1e-9)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: gaussian_sigma(0.0, 1e-5), "eps"),
        (lambda: gaussian_sigma(-1.0, 1e-5), "-1"),
        (lambda: gaussian_sigma(float("nan"), 1e-5), "NaN"),
        (lambda: gaussian_sigma(1.0, 0.0), "delta"),
        (lambda: gaussian_sigma(1.0, 1.5), "1.5"),
        (lambda: gaussian_sigma(1.0, 1e-5, sample_rate=0.0), "sample_rate"),
        (lambda: gaussian_sigma(1.0, 1e-5, sample_rate=1.2), "1.2"),
        (lambda: gaussian_sigma(1.0, 1e-5, adjacency="neighbourly"), "neighbourly"),
        (lambda: gaussian_epsilon(-2.0, 1e-5), "-2"),
    ],
)
def test_invalid_inputs_raise_privacy_error(call, needle):
    with pytest.raises(epsvec.PrivacyError, match=needle):
        call()
