"""Types of the native module. The public API is in epsvec/__init__.py."""

from os import PathLike

import numpy as np
import numpy.typing as npt

__version__: str

class SamplingParams:
    def __init__(
        self,
        *,
        max_new_tokens: int = 128,
        min_new_tokens: int = 0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
    ) -> None: ...
    max_new_tokens: int
    min_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repetition_penalty: float
    seed: int | None

class Engine:
    def __init__(self, path: str | PathLike[str], device: str = "auto", dtype: str = "auto") -> None: ...
    def config(self) -> dict[str, object]: ...
    def fingerprint(self) -> str: ...
    def encode(self, texts: list[str], add_special_tokens: bool = True) -> tuple[list[list[int]], int]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str: ...
    def pooled_states(
        self,
        ids: list[list[int]],
        layers: list[int] | None,
        pool: str,
        batch_size: int,
        weights: list[list[float]] | None = None,
    ) -> npt.NDArray[np.float32]: ...
    def token_states(
        self, ids: list[list[int]], layers: list[int] | None, batch_size: int
    ) -> list[npt.NDArray[np.float32]]: ...
    def logits(self, ids: list[list[int]], batch_size: int) -> list[npt.NDArray[np.float32]]: ...
    def next_token_logprobs(
        self, ids: list[list[int]], candidates: list[int], batch_size: int
    ) -> npt.NDArray[np.float32]: ...
    def generate(
        self,
        ids: list[list[int]],
        streams: list[int],
        params: SamplingParams,
        stop: list[str],
        steer: tuple[list[int], npt.NDArray[np.float32], str] | None = None,
        lengths: list[tuple[int, int | None]] | None = None,
    ) -> list[tuple[list[int], str, str]]: ...

def cuda_device_count() -> int: ...
def sample_logits(logits: npt.NDArray[np.float32], streams: list[int], params: SamplingParams) -> list[int]: ...
def gaussian_sigma(eps: float, delta: float, sample_rate: float, adjacency_name: str) -> float: ...
def gaussian_epsilon(sigma: float, delta: float, sample_rate: float, adjacency_name: str) -> float: ...
def gaussian_delta(sigma: float, eps: float, sample_rate: float, adjacency_name: str) -> float: ...
def save_vector(path: str | PathLike[str], directions: npt.NDArray[np.float32], metadata: str) -> None: ...
def load_vector(path: str | PathLike[str]) -> tuple[npt.NDArray[np.float32], str]: ...
class PrivateRelease:
    def __init__(
        self, n_layers: int, hidden: int, clip_norm: float, sample_rate: float, noise_seed: int | None = None
    ) -> None: ...
    def offer_rows(self, rows: npt.NDArray[np.float32]) -> None: ...
    def offer_prompts(
        self,
        engine: Engine,
        prefix: list[int],
        tails: list[list[int]],
        layers: list[int],
        pool: str,
        baseline: npt.NDArray[np.float32],
        weights: list[list[float]] | None = None,
    ) -> None: ...
    def merge(self, share: ClippedSum) -> None: ...
    @property
    def curator_counts(self) -> dict[str, int | bool | None]: ...
    def finish(self, sigmas: list[float], normalise: bool = True
               ) -> list[tuple[npt.NDArray[np.float32], dict[str, object]]]: ...
class ClippedSum:
    def __init__(self, n_layers: int, hidden: int, clip_norm: float) -> None: ...
    def add_prompts(
        self,
        engine: Engine,
        prefix: list[int],
        tails: list[list[int]],
        layers: list[int],
        pool: str,
        baseline: npt.NDArray[np.float32],
        weights: list[list[float]] | None = None,
    ) -> None: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes, n_layers: int, hidden: int) -> ClippedSum: ...
