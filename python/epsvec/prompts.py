"""The fixed-shot prompts of EPSVec (METHOD.md section 1), built as token
ids piece by piece so the example's own tokens are known exactly, in either
prompt format: raw text (base models) or through the chat template
(instruct models)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidInputError

# METHOD.md's stops, plus the tag misspellings small models write.
STOP = ["</end>", "<begin>", "Label:", "Text:", "<end>", "</begin>"]
FORMATS = ("auto", "raw", "chat")
# In the chat format the shots are the user's message, which ends asking for one more.
CHAT_REQUEST = "Write one more example in the same format."
_USER_MESSAGE = "\x00epsvec user message\x00"  # stands for the message while the template is split


@dataclass(frozen=True)
class PromptFormat:
    """How a fixed-shot prompt reaches the model.

    ``"raw"``: the text itself, after the tokenizer's BOS (base models).
    ``"chat"``: the header and shots as one user message through the model's
    chat template, ending with :data:`CHAT_REQUEST`, and the shot opening
    (``<begin>\nText:``) as the start of the assistant's answer; ``before``
    and ``after`` are the template's text around the message.

    ``single_line``: every example (shot, record, negative) is written on
    one line, its line breaks turned into spaces, and generation also stops
    at a newline. Without it a small model runs past the example into new
    lines of its own (headings, lists, code), far from one-line corpora.
    """

    name: str = "raw"
    before: str = ""
    after: str = ""
    single_line: bool = True

    @property
    def add_special_tokens(self) -> bool:
        """Whether the tokenizer adds its special tokens (BOS): a chat template writes its own."""
        return self.name == "raw"

    def prompt(self, prefix_text: str, label: str | None) -> str:
        """The continuation prompt: header and shots, then the opening the model completes."""
        return self.before + prefix_text + self._tail(label)

    def head(self, prefix_text: str, label: str | None) -> str:
        """What precedes a data shot's text (through its ``Text:``)."""
        return self.before + prefix_text + opening(label)

    def tail(self, label: str | None) -> str:
        """What follows a data shot's text: its closing tag, then the opening the model completes."""
        return "\n</end>\n" + self._tail(label)

    def _tail(self, label: str | None) -> str:
        return (CHAT_REQUEST + self.after if self.name == "chat" else "") + opening(label)

    @property
    def stop(self) -> list[str]:
        """Where a generated example ends."""
        return STOP + ["\n"] if self.single_line else STOP

    def example(self, text: str) -> str:
        """An example's text as the prompt writes it."""
        return " ".join(text.split()) if self.single_line else text.strip()

    def to_dict(self) -> dict:
        return {"name": self.name, "before": self.before, "after": self.after, "single_line": self.single_line}

    @classmethod
    def from_dict(cls, d: dict | None) -> "PromptFormat":
        """From :meth:`to_dict`; None (files written before formats existed) is
        raw, and files written before ``single_line`` existed keep line breaks."""
        if d is None:
            return cls(single_line=False)
        return cls(d["name"], d.get("before", ""), d.get("after", ""), d.get("single_line", False))


def check_format(prompt_format) -> None:
    """Refuses an unknown format (before any model work)."""
    if prompt_format not in FORMATS:
        raise InvalidInputError(f"prompt_format must be one of {FORMATS}, got {prompt_format!r}")


def resolve_format(model, prompt_format: str = "auto", single_line: bool = True) -> PromptFormat:
    """The :class:`PromptFormat` for ``prompt_format`` ("raw", "chat", or
    "auto": the model's :attr:`~epsvec.Model.prompt_format`)."""
    check_format(prompt_format)
    if not isinstance(single_line, bool):
        raise InvalidInputError(f"single_line must be True or False, got {single_line!r}")
    if prompt_format == "auto":
        prompt_format = model.prompt_format
    if prompt_format == "raw":
        return PromptFormat(single_line=single_line)
    rendered = model.chat_prompt(_USER_MESSAGE)
    before, found, after = rendered.partition(_USER_MESSAGE)
    if not found:
        raise InvalidInputError("this model's chat template does not write the user message verbatim; "
                                "use prompt_format='raw'")
    return PromptFormat("chat", before, after, single_line)


def header(domain: str | None, label: str | None) -> str:
    what = domain or "texts"
    if label is not None and domain is None:
        what = f"texts of the class \"{label}\""
    return (
        f"Below are several diverse examples of {what}. Each example is human-written and enclosed "
        "between <begin> and </end> tags. Here are the examples:\n\n"
    )


def shot(text: str, label: str | None, fmt: PromptFormat = PromptFormat()) -> str:
    return f"<begin>\n{_label_line(label)}Text: {fmt.example(text)}\n</end>\n"


def opening(label: str | None) -> str:
    """The continuation prefix the model completes."""
    return f"<begin>\n{_label_line(label)}Text:"


def _label_line(label: str | None) -> str:
    return "" if label is None else f"Label: {label}\n"


def prefix(domain: str | None, label: str | None, fixed_shots: list[str], fmt: PromptFormat = PromptFormat()) -> str:
    """Header and fixed shots: everything before the data shot."""
    return header(domain, label) + "".join(shot(s, label, fmt) for s in fixed_shots)


@dataclass
class PromptIds:
    """A prompt's token ids and which of them belong to the data shot."""

    ids: list[int]
    example: slice


def with_example(model, prefix_text: str, example: str, label: str | None, max_example_tokens: int,
                 fmt: PromptFormat = PromptFormat()) -> tuple[PromptIds, bool]:
    """The prompt prefix + one data shot + the opening, as token ids.

    The example is cut to ``max_example_tokens`` at the last sentence end
    that fits (at the token limit if none does). Returns the prompt and
    whether the example was truncated.
    """
    _, [piece], truncated = with_examples(model, prefix_text, [example], label, max_example_tokens, fmt)
    return piece, truncated == 1


def with_examples(model, prefix_text: str, examples: list[str], label: str | None, max_example_tokens: int,
                  fmt: PromptFormat = PromptFormat()) -> tuple[list[int], list[PromptIds], int]:
    """:func:`with_example` for many examples at once: ``(head, prompts,
    how many were truncated)``, where ``head`` (the prefix and the data
    shot's opening, public) starts every prompt."""
    head, tail = frame(model, prefix_text, label, fmt)
    bodies = model.tokenize([" " + fmt.example(e) for e in examples], add_special_tokens=False) if examples else []
    pieces, truncated = [], 0
    for body in bodies:
        if len(body) > max_example_tokens:
            body = _cut_at_sentence(model, body, max_example_tokens)
            truncated += 1
        pieces.append(PromptIds(head + body + tail, slice(len(head), len(head) + len(body))))
    return head, pieces, truncated


def frame(model, prefix_text: str, label: str | None, fmt: PromptFormat = PromptFormat()
          ) -> tuple[list[int], list[int]]:
    """The token ids around a data shot: ``head`` (prefix and the shot's
    opening) and ``tail`` (its closing tag and the continuation prefix)."""
    head = model.tokenize(fmt.head(prefix_text, label), add_special_tokens=fmt.add_special_tokens)[0]
    tail = model.tokenize(fmt.tail(label), add_special_tokens=False)[0]
    return head, tail


def _cut_at_sentence(model, ids: list[int], limit: int) -> list[int]:
    text = model.decode(ids[:limit])
    ends = [m.end() for m in re.finditer(r"[.!?](?:\s|$)", text)]
    if ends:
        return model.tokenize(text[: ends[-1]].rstrip(), add_special_tokens=False)[0][:limit]
    return ids[:limit]
