"""The LLM-judge quality filter: next-token log-probabilities against the
full logits, the draw-and-replace rule, and synthesize(judge=...) end to end
with the embedded instruct model as judge."""

from __future__ import annotations

import numpy as np
import pytest

import epsvec
from epsvec import judge as judging
from test_synthesize import CLASSES, FAST, LABELS, RECORDS

HEAD = "Read the following short sentence taken from a film review, then say in one word what its mood is: "


def _reference_logprobs(model, text: str, candidates: list[int]) -> np.ndarray:
    last = model.logits([text])[0][-1].astype(np.float64)
    return (last - last.max() - np.log(np.exp(last - last.max()).sum()))[candidates]


@pytest.mark.parametrize("shared_head", [True, False])
def test_next_token_logprobs_match_the_last_row_of_the_logits(default_model, shared_head):
    texts = [HEAD + "A quiet, moving film.", HEAD + "Dull and far too long, I left early."]
    if not shared_head:
        texts.append("No shared beginning here.")  # no prefix is shared: every text runs whole
    else:
        assert len(default_model.tokenize(HEAD)[0]) >= 16, "long enough to be run once and reused"
    candidates = [0, 17, 1000, default_model.config.vocab_size - 1]
    got = default_model.next_token_logprobs(texts, candidates, batch_size=2)
    assert got.shape == (len(texts), len(candidates)) and got.dtype == np.float32
    for text, row in zip(texts, got):
        np.testing.assert_allclose(row, _reference_logprobs(default_model, text, candidates), atol=2e-4)
    with pytest.raises(epsvec.InvalidInputError, match="outside the vocabulary"):
        default_model.next_token_logprobs(texts, [default_model.config.vocab_size])
    with pytest.raises(epsvec.InvalidInputError, match="token ids >= 0"):
        default_model.next_token_logprobs(texts, [-1])


def test_ratings_are_the_expected_digit(default_model):
    texts = ["A quiet, moving film.", "zzz qqq 123 <div>"]
    got = judging.ratings(default_model, texts, "film reviews", "pos")
    digits = [ids[0] for ids in default_model.tokenize(list("123456789"), add_special_tokens=False)]
    head, tail = default_model.chat_prompt(judging.question("film reviews", "pos")).split(judging.SAMPLE_MARK)
    assert '"pos"' in head and "film reviews" in head
    for text, rating in zip(texts, got):
        logprobs = _reference_logprobs(default_model, head + text + tail, digits)
        p = np.exp(logprobs) / np.exp(logprobs).sum()
        assert rating == pytest.approx(p @ np.arange(1, 10), abs=1e-3) and 1 <= rating <= 9


def test_filter_keeps_the_first_that_pass_in_draw_order():
    asked = []

    def draw(indices):
        asked.append(indices)
        return [f"s{i}" for i in indices]

    def every_third(texts):
        return np.array([9.0 if int(t[1:]) % 3 == 0 else 2.0 for t in texts])

    texts, ratings, drawn = judging.filtered(draw, every_third, 4, threshold=5, max_draws=3)
    assert texts == ["s0", "s3", "s6", "s9"] and ratings == [9.0] * 4
    assert [i for r in asked for i in r] == list(range(drawn)), "indices drawn once each, in order"
    assert drawn <= 12 and len(asked) > 1, "the gap is drawn again"

    asked.clear()
    texts, ratings, drawn = judging.filtered(draw, lambda t: np.array([float(int(x[1:]) % 7) for x in t]), 3,
                                             threshold=8, max_draws=2)
    assert drawn == 6 and texts == ["s3", "s4", "s5"] and ratings == [3.0, 4.0, 5.0], \
        "none passes: the cap is drawn and the best rated fill the gap, in draw order"


def test_synthesize_with_a_judge(tiny_models, default_model):
    model = epsvec.load_model(tiny_models["llama"], device="cpu")
    kw = dict(labels=LABELS, classes=CLASSES, model=model, domain="reviews", **FAST)
    every = epsvec.synthesize(RECORDS, 6, eps=4.0, **kw)
    judge = epsvec.Judge(default_model, threshold=5.0, max_draws=3)
    out = epsvec.synthesize(RECORDS, 2, eps=4.0, judge=judge, return_dataset=False, **kw)
    assert out.labels == ["neg"] * 2 + ["pos"] * 2 and len(out.ratings) == 4
    note = out.report.generation["judge"]
    assert note["threshold"] == 5.0 and note["max_draws"] == 3 and "free" in note["rule"]
    assert note["model"] == default_model.path.rsplit("/", 1)[-1] and len(note["drawn"]) == 2
    for c, (plan, drawn) in enumerate(zip(out.plans, note["drawn"])):
        assert 2 <= drawn <= 6
        pool = [t for t, label in zip(every.texts, every.labels) if label == plan.label][:drawn]
        kept, rated = out.texts[2 * c:2 * c + 2], out.ratings[2 * c:2 * c + 2]
        assert kept == [t for t in pool if t in kept], "a subset of the same draws, in their order"
        pool_ratings = judging.ratings(default_model, pool, "reviews", plan.label)
        assert rated == pytest.approx([pool_ratings[pool.index(t)] for t in kept], abs=1e-4)
        if min(rated) < 5.0:
            assert drawn == 6, "one below the threshold is kept only when the cap is reached"
        last = max(pool.index(t) for t in kept)
        skipped = [r for t, r in zip(pool[:last], pool_ratings[:last]) if t not in kept]
        assert all(r < 5.0 for r in skipped), "no passing draw is passed over"
    data = epsvec.synthesize(RECORDS, 2, eps=4.0, judge=judge, return_dataset=True, **kw)
    assert data["judge_rating"] == pytest.approx(out.ratings) and data["text"] == out.texts


def test_judge_errors_come_before_any_budget(tiny_models, default_model):
    model = epsvec.load_model(tiny_models["llama"], device="cpu")
    kw = dict(labels=LABELS, classes=CLASSES, model=model, **FAST)
    with pytest.raises(epsvec.InvalidInputError, match="chat template"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, judge=model, **kw)
    with pytest.raises(epsvec.InvalidInputError, match="two filters"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, judge=default_model, oversample=2, **kw)
    with pytest.raises(epsvec.InvalidInputError, match="judge must be"):
        epsvec.synthesize(RECORDS, 2, eps=4.0, judge=3, **kw)
    with pytest.raises(epsvec.InvalidInputError, match="threshold"):
        epsvec.Judge(default_model, threshold=10)
    with pytest.raises(epsvec.InvalidInputError, match="max_draws"):
        epsvec.Judge(default_model, max_draws=0)
