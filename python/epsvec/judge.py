"""The paper's quality filter: an LLM judge rates every synthetic sample,
and the samples rated below a threshold are replaced by fresh draws, up to
a cap (METHOD.md section 8: a Qwen3-4B judge, 6 of 10, up to 3x the count).

The judge reads only synthetic samples and public words (the domain and
the class label), so filtering is post-processing of the DP release: it
costs no privacy, whatever the judge says.

A rating is the judge's expected digit: the probabilities of the next
tokens "1".."9" after the question, renormalised over those nine, weigh
the digits. That uses the whole distribution (a small judge's sampled
digit is noisy) and needs one forward pass per sample, the instruction
shared by all of them run once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError
from .model import Model, load_model
from .progress import counted

DIGITS = "123456789"
SAMPLE_MARK = "\x00"  # where the sample goes in the judge's prompt, split off before use


@dataclass(frozen=True)
class Judge:
    """How samples are judged.

    Attributes:
        model: The judge: a loaded instruct model (one with a chat
            template) or a name or path for :func:`epsvec.load_model`.
            The default, the 1.5B, is the only judge installable here that
            told real records from samples (docs/tuning.md, round 9).
        threshold: Samples rated below it (on 1-9) are drawn again.
        max_draws: At most ``max_draws * n`` samples are drawn per class;
            if fewer than ``n`` pass by then, the best rated of the rest
            fill the gap.
    """

    model: Model | str = "qwen2.5-coder-1.5b-instruct"
    threshold: float = 5.0
    max_draws: int = 3

    def __post_init__(self):
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not 1 <= self.threshold <= 9:
            raise InvalidInputError(f"judge threshold must be a number in [1, 9], got {self.threshold!r}")
        if isinstance(self.max_draws, bool) or not isinstance(self.max_draws, int) or self.max_draws < 1:
            raise InvalidInputError(f"judge max_draws must be an integer >= 1, got {self.max_draws!r}")

    def loaded(self) -> "Judge":
        """This judge with its model loaded (names and paths resolved once)
        and checked: it must have a chat template and write each digit as
        one token."""
        judge = self if isinstance(self.model, Model) else Judge(load_model(self.model), self.threshold, self.max_draws)
        digit_ids(judge.model)
        return judge

    @property
    def name(self) -> str:
        """The judge model's name, for reports."""
        return os.path.basename(self.model.path) if isinstance(self.model, Model) else str(self.model)


def as_judge(judge: "Judge | Model | str | None") -> Judge | None:
    """A :class:`Judge` from what ``synthesize(judge=...)`` accepts."""
    if judge is None or isinstance(judge, Judge):
        return judge
    if isinstance(judge, (Model, str)):
        return Judge(judge)
    raise InvalidInputError(f"judge must be a Judge, a model or a model name, got {type(judge).__name__}")


def question(domain: str | None, label: str | None) -> str:
    """The judge's user message, with :data:`SAMPLE_MARK` where the sample goes."""
    kind = domain or "texts"
    labelled = f' labelled "{label}"' if label is not None else ""
    return (f"Below is a text meant to be one of a collection of {kind}{labelled}. Rate how well it passes for a "
            f"real one: 1 = garbled, unfinished, off-topic or not one of {kind}{labelled}; 9 = reads exactly like "
            f"a real one.\n\nText: {SAMPLE_MARK}\n\nAnswer with a single digit from 1 to 9.")


def digit_ids(judge: Model) -> list[int]:
    """The token ids of "1".."9" in ``judge``'s vocabulary, checking it can judge."""
    if not judge.config.chat_template:
        raise InvalidInputError(f"the judge {judge!r} has no chat template; it must be an instruct model")
    digits = judge.tokenize(list(DIGITS), add_special_tokens=False)
    if any(len(ids) != 1 for ids in digits):
        raise InvalidInputError(f"the judge {judge!r} does not write each digit as one token")
    return [ids[0] for ids in digits]


def ratings(judge: Model, texts: Sequence[str], domain: str | None, label: str | None,
            batch_size: int = 8, progress: bool | str = False) -> np.ndarray:
    """Each text's expected rating, in [1, 9], by ``judge``; ``progress``
    shows a bar over the texts (a string titles it)."""
    digits = digit_ids(judge)
    if not texts:
        return np.zeros(0)
    head, tail = judge.chat_prompt(question(domain, label)).split(SAMPLE_MARK)
    prompts = [head + t + tail for t in texts]
    step = 4 * batch_size  # a bar update per few batches; each chunk reuses the shared instruction
    parts = []
    with counted(len(prompts), bool(progress), progress if isinstance(progress, str) else "judging",
                 unit="sample") as bar:
        for start in range(0, len(prompts), step):
            parts.append(judge.next_token_logprobs(prompts[start:start + step], digits, batch_size=batch_size,
                                                   add_special_tokens=False))
            bar.update(len(parts[-1]))
    logprobs = np.concatenate(parts).astype(np.float64)
    weights = np.exp(logprobs - logprobs.max(axis=1, keepdims=True))
    return (weights / weights.sum(axis=1, keepdims=True)) @ np.arange(1, 10)


def filtered(draw: Callable[[range], list[str]], rate: Callable[[list[str]], np.ndarray], n: int,
             threshold: float, max_draws: int) -> tuple[list[str], list[float], int]:
    """``n`` samples that pass ``threshold``, drawn in rounds: ``draw(range)``
    makes samples by index, ``rate`` rates them. Each round draws what the
    pass rate so far says the gap needs, until ``n`` pass or ``max_draws *
    n`` are drawn; the first ``n`` that pass are kept (then the best rated
    of the rest), in draw order. Returns the samples, their ratings and
    how many were drawn. Depends only on what ``draw`` and ``rate`` return,
    so a seeded run repeats."""
    texts: list[str] = []
    scores: list[float] = []
    cap = max_draws * n
    passed = 0
    while passed < n and len(texts) < cap:
        rate_so_far = passed / len(texts) if texts else 1.0
        want = math.ceil((n - passed) / max(rate_so_far, 0.25))
        start = len(texts)
        new = draw(range(start, min(start + want, cap)))
        texts += new
        scores += [float(s) for s in rate(new)]
        passed = sum(s >= threshold for s in scores)
    good = [i for i, s in enumerate(scores) if s >= threshold][:n]
    rest = sorted((i for i, s in enumerate(scores) if s < threshold), key=lambda i: -scores[i])
    keep = sorted(good + rest[:n - len(good)])
    return [texts[i] for i in keep], [scores[i] for i in keep], len(texts)
