"""Lazy imports of heavy or optional dependencies, with an install hint instead of a bare ImportError."""

from __future__ import annotations

import importlib
from types import ModuleType

from edge_emotion.errors import MissingDependencyError

#: import name -> how to install it
INSTALL_HINTS: dict[str, str] = {
    "facenet_pytorch": "pip install --no-deps facenet-pytorch==2.6.0  (tests and detector_nets only; it pins torch<2.3)",
    "tensorrt": "pip install 'edge-emotion[trt]'  (needs NVIDIA's package index and a CUDA GPU)",
    "onnxruntime": "pip install onnxruntime  (or 'edge-emotion[gpu]' for onnxruntime-gpu; never both)",
    "matplotlib": "pip install matplotlib",
    "torch": "pip install 'edge-emotion[train]'  (training, export, calibration, the demo)",
    "onnx": "pip install 'edge-emotion[train]'  (training, export, calibration, the demo)",
    "ray": "pip install 'edge-emotion[ray]'  (Ray Data, for --executor ray)",
    "ray.data": "pip install 'edge-emotion[ray]'  (Ray Data, for --executor ray)",
}


def require(module: str) -> ModuleType:
    """Import `module` or raise MissingDependencyError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = INSTALL_HINTS.get(module, f"pip install {module}")
        raise MissingDependencyError(f"{module} is not installed: {hint}") from exc
