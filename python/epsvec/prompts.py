"""The fixed-shot prompts of EPSVec (METHOD.md section 1), built as token
ids piece by piece so the example's own tokens are known exactly."""

from __future__ import annotations

import re
from dataclasses import dataclass

# METHOD.md's stops, plus the tag misspellings small models write.
STOP = ["</end>", "<begin>", "Label:", "Text:", "<end>", "</begin>"]


def header(domain: str | None, label: str | None) -> str:
    what = domain or "texts"
    if label is not None and domain is None:
        what = f"texts of the class \"{label}\""
    return (
        f"Below are several diverse examples of {what}. Each example is human-written and enclosed "
        "between <begin> and </end> tags. Here are the examples:\n\n"
    )


def shot(text: str, label: str | None) -> str:
    return f"<begin>\n{_label_line(label)}Text: {text.strip()}\n</end>\n"


def opening(label: str | None) -> str:
    """The continuation prefix the model completes."""
    return f"<begin>\n{_label_line(label)}Text:"


def _label_line(label: str | None) -> str:
    return "" if label is None else f"Label: {label}\n"


def prefix(domain: str | None, label: str | None, fixed_shots: list[str]) -> str:
    """Header and fixed shots: everything before the data shot."""
    return header(domain, label) + "".join(shot(s, label) for s in fixed_shots)


@dataclass
class PromptIds:
    """A prompt's token ids and which of them belong to the data shot."""

    ids: list[int]
    example: slice


def with_example(model, prefix_text: str, example: str, label: str | None, max_example_tokens: int) -> tuple[PromptIds, bool]:
    """The prompt prefix + one data shot + the opening, as token ids.

    The example is cut to ``max_example_tokens`` at the last sentence end
    that fits (at the token limit if none does). Returns the prompt and
    whether the example was truncated.
    """
    _, [piece], truncated = with_examples(model, prefix_text, [example], label, max_example_tokens)
    return piece, truncated == 1


def with_examples(model, prefix_text: str, examples: list[str], label: str | None, max_example_tokens: int
                  ) -> tuple[list[int], list[PromptIds], int]:
    """:func:`with_example` for many examples at once: ``(head, prompts,
    how many were truncated)``, where ``head`` (the prefix and the data
    shot's opening, public) starts every prompt."""
    head, tail = frame(model, prefix_text, label)
    bodies = model.tokenize([" " + e.strip() for e in examples], add_special_tokens=False) if examples else []
    pieces, truncated = [], 0
    for body in bodies:
        if len(body) > max_example_tokens:
            body = _cut_at_sentence(model, body, max_example_tokens)
            truncated += 1
        pieces.append(PromptIds(head + body + tail, slice(len(head), len(head) + len(body))))
    return head, pieces, truncated


def frame(model, prefix_text: str, label: str | None) -> tuple[list[int], list[int]]:
    """The token ids around a data shot: ``head`` (prefix and the shot's
    opening) and ``tail`` (its closing tag and the continuation prefix)."""
    head = model.tokenize(prefix_text + opening(label))[0]
    tail = model.tokenize("\n</end>\n" + opening(label), add_special_tokens=False)[0]
    return head, tail


def _cut_at_sentence(model, ids: list[int], limit: int) -> list[int]:
    text = model.decode(ids[:limit])
    ends = [m.end() for m in re.finditer(r"[.!?](?:\s|$)", text)]
    if ends:
        return model.tokenize(text[: ends[-1]].rstrip(), add_special_tokens=False)[0][:limit]
    return ids[:limit]
