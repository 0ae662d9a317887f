"""Exceptions raised by epsvec.

Every error from the engine is an :class:`EpsvecError`; the subclasses say
what went wrong. Errors about the caller's arguments also derive from
``ValueError`` so generic handlers keep working.
"""

__all__ = [
    "EpsvecError",
    "ModelLoadError",
    "CorruptFileError",
    "UnsupportedArchitectureError",
    "ShapeMismatchError",
    "TokenizerError",
    "InvalidInputError",
    "DeviceError",
    "PrivacyError",
    "EngineError",
    "VectorModelMismatchError",
    "ReleaseAbortedError",
]


class EpsvecError(Exception):
    """Base class of every epsvec error."""


class ModelLoadError(EpsvecError):
    """A model path is missing, unreadable, or not a usable checkpoint."""


class CorruptFileError(ModelLoadError):
    """A model file is malformed: truncated, bad header, invalid JSON."""


class UnsupportedArchitectureError(ModelLoadError):
    """The checkpoint's architecture is not one epsvec implements."""


class ShapeMismatchError(ModelLoadError):
    """A weight's shape disagrees with the model's config."""


class TokenizerError(EpsvecError):
    """The tokenizer could not be built or could not encode/decode."""


class InvalidInputError(EpsvecError, ValueError):
    """An argument the engine cannot use (empty texts, unknown layer, ...)."""


class DeviceError(EpsvecError):
    """The requested device is unavailable (e.g. CUDA without a GPU)."""


class PrivacyError(EpsvecError, ValueError):
    """An impossible privacy parameter (eps <= 0, delta outside (0, 1), ...)."""


class EngineError(EpsvecError):
    """libtorch failed while running the model."""


class VectorModelMismatchError(EpsvecError, ValueError):
    """A dataset vector is used with a model other than the one it was made with."""


class ReleaseAbortedError(EpsvecError):
    """The engine failed while a private release read its records (e.g. out of
    memory); the release was aborted and nothing was returned or written."""
