"""Rendering prompts through a model's own chat template, as transformers'
``apply_chat_template`` does (jinja2, sandboxed, trim_blocks/lstrip_blocks)."""

from __future__ import annotations

from functools import lru_cache

from .errors import InvalidInputError


@lru_cache(maxsize=8)
def _compile(template: str):
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def render(template: str | None, prompt: str, special_tokens: dict[str, str | None]) -> str:
    """The text an instruct model expects for one user message, ending with
    the assistant's turn opened."""
    if not template:
        raise InvalidInputError("chat=True, but this model has no chat template; use chat=False for raw text")
    return _compile(template).render(
        messages=[{"role": "user", "content": prompt}], add_generation_prompt=True, **special_tokens
    )
