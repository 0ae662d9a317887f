"""What the prompt's form leaves on a sample, taken off: the quotes a model
puts around an example it writes after ``Text:``, a tag it starts at the
end (``</en``, ``</description>``), and, for a sample stopped by the token
cap, the unfinished sentence after its last complete one. Post-processing
of public samples: free."""

from __future__ import annotations

import re

QUOTES = {'"': '"', "\u201c": "\u201d", "'": "'"}
# A tag at the very end (closed or not), or an opening one at the very start.
TRAILING_TAG = re.compile(r"\s*</?[A-Za-z][\w-]*>?\s*$|\s*</\s*$|\s*<\s*$")
LEADING_TAG = re.compile(r"^\s*<[A-Za-z][\w-]*>\s*")
SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d)]*(?=\s|$)")
MIN_KEPT = 0.5  # a cut sample is ended at a sentence only if that keeps this share of it


def tidy(text: str, cut_off: bool = False) -> str:
    """``text`` without its wrapping quotes or tag fragments; if ``cut_off``
    (it reached the token cap), ended at its last complete sentence when
    that keeps at least half of it."""
    text = LEADING_TAG.sub("", TRAILING_TAG.sub("", text.strip()))
    text = _unquoted(text)
    if cut_off:
        ends = [m.end() for m in SENTENCE_END.finditer(text)]
        if ends and ends[-1] >= MIN_KEPT * len(text):
            text = _unquoted(text[: ends[-1]])
    return text


def _unquoted(text: str) -> str:
    """Without a quote pair around the whole text, or a double quote at
    either end that has no partner (a lone apostrophe is left alone)."""
    for left, right in QUOTES.items():
        marks = text.count(left) + (text.count(right) if left != right else 0)
        if marks == 2 and len(text) >= 2 and text[0] == left and text[-1] == right:
            return text[1:-1].strip()
        if marks == 1 and left != "'":
            if text.startswith(left):
                return text[1:].strip()
            if text.endswith(right):
                return text[:-1].strip()
    return text
