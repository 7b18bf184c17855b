"""Inference backends behind one interface; `open_backend` picks one from the artifact or a name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_emotion.backends.base import Backend

BACKENDS = ("torch", "onnxruntime", "tensorrt")
KIND_BY_SUFFIX = {".pt": "torch", ".onnx": "onnxruntime", ".engine": "tensorrt"}


def backend_for(path: str | Path) -> str:
    """The backend an artifact's kind calls for (by suffix: .pt, .onnx, .engine)."""
    suffix = Path(path).suffix.lower()
    if suffix not in KIND_BY_SUFFIX:
        raise ValueError(f"{path}: unknown artifact kind {suffix!r}; expected one of {sorted(KIND_BY_SUFFIX)}")
    return KIND_BY_SUFFIX[suffix]


def open_backend(path: str | Path, backend: str | None = None, device: str = "auto", **options: Any) -> Backend:
    """Open `path` with the named backend, or the one its kind calls for. Heavy imports happen here, lazily."""
    name = backend or backend_for(path)
    if name == "torch":
        from edge_emotion.backends.torch_backend import TorchBackend

        return TorchBackend(path, device=device, **options)
    if name == "onnxruntime":
        from edge_emotion.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, device=device, **options)
    if name == "tensorrt":
        from edge_emotion.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, device=device, **options)
    raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")


__all__ = ["BACKENDS", "Backend", "backend_for", "open_backend"]
