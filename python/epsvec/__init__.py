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
    ReleaseAbortedError,
    ShapeMismatchError,
    TokenizerError,
    UnsupportedArchitectureError,
    VectorModelMismatchError,
)
from . import corpora, privacy, recipes, report
from .diagnostics import CuratorDiagnostics, curator_diagnostics
from .extract import extract
from .judge import Judge
from .evaluation import EvaluationReport, evaluate
from .report import PrivacyReport, PrivacyStep
from .synthesis import SyntheticData, synthesize
from .model import Generation, Model, ModelConfig, load_model
from .vector import DatasetVector
from ._cuda import device_count as cuda_device_count

__all__ = [
    "__version__",
    "load_model",
    "cuda_device_count",
    "extract",
    "synthesize",
    "SyntheticData",
    "Judge",
    "curator_diagnostics",
    "evaluate",
    "EvaluationReport",
    "CuratorDiagnostics",
    "corpora",
    "DatasetVector",
    "privacy",
    "report",
    "PrivacyReport",
    "PrivacyStep",
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
    "VectorModelMismatchError",
    "ReleaseAbortedError",
]
