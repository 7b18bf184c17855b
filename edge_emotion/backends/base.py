"""One interface for every inference backend (after Polygraphy's runners).

    with open_backend("model.onnx") as backend:            # or a checkpoint, or an engine
        probs = backend.infer(faces, spectrograms)          # [S, 6] float32
        scores = consensus(probs[:n])                      # outside the backend, numpy

A backend runs the shared per-segment branch only. It takes float32 numpy inputs
(faces [S, 3, 224, 224], spectrograms [S, 1, 192, 120]) whatever its precision,
casts as its artifact needs, and returns float32 probabilities.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from edge_emotion.contract import ModelContract


class Backend(ABC):
    """Open an artifact, run batches of segments, close. Use as a context manager."""

    name: str = "base"

    def __init__(self, path: Path, contract: ModelContract) -> None:
        self.path = path
        self.contract = contract

    @property
    def precision(self) -> str:
        return self.contract.precision

    def infer(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        """faces [S, 3, H, W], spectrograms [S, 1, F, T] float32 -> probabilities [S, K] float32.

        Checks the inputs against the contract once, here, so no backend can forget to."""
        self.check_inputs(faces, spectrograms)
        return self.infer_impl(faces, spectrograms)

    @abstractmethod
    def infer_impl(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        """The backend's own inference on inputs already checked against the contract."""

    def synchronize(self) -> None:
        """Wait for queued device work (timing). CPU backends are synchronous already."""

    def close(self) -> None:
        """Release the session / engine / model."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_inputs(self, faces: np.ndarray, spectrograms: np.ndarray) -> None:
        """Refuse inputs whose shape does not match the contract, naming both shapes."""
        want = self.contract.input_shapes()
        for name, array in (("face", faces), ("spectrogram", spectrograms)):
            if list(array.shape[1:]) != want[name][1:]:
                raise ValueError(f"{name} input has shape {list(array.shape)}, the model expects {want[name]}")
        if faces.shape[0] != spectrograms.shape[0]:
            raise ValueError(f"{faces.shape[0]} faces but {spectrograms.shape[0]} spectrograms")
