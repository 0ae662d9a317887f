"""epsvec: differentially private synthetic text with dataset vectors.

Example:
    >>> import epsvec
    >>> model = epsvec.load_model()          # the embedded SmolLM2-135M
    >>> states = model.hidden_states(["A gripping, tender film."])
"""

from ._epsvec import SamplingParams, __version__
from .errors import (
    CorruptFileError,
    DeviceError,
    EngineError,
    EpsvecError,
    InvalidInputError,
    ModelLoadError,
    PrivacyError,
    ShapeMismatchError,
    TokenizerError,
    UnsupportedArchitectureError,
)
from .model import Generation, Model, ModelConfig, load_model

__all__ = [
    "__version__",
    "load_model",
    "Model",
    "ModelConfig",
    "Generation",
    "SamplingParams",
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
]
