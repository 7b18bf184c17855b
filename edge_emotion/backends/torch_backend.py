"""The PyTorch backend: a training checkpoint run eagerly on the CPU or a CUDA GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_emotion.backends.base import Backend
from edge_emotion.contract import ModelContract
from edge_emotion.toolchain.checkpoint import build_branch, config_hash, load_checkpoint, preprocess_config


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():  # a ValueError, not torch's RuntimeError
        raise ValueError(f"device {device!r}: {torch.cuda.device_count()} CUDA device(s) here; use --device cpu or auto")
    return resolved


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, path: str | Path, device: str = "auto", precision: str = "fp32") -> None:
        state = load_checkpoint(path)
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"the torch backend runs fp32 or fp16 (autocast on CUDA), not {precision!r}")
        contract = ModelContract(
            labels=tuple(state["labels"]),
            preprocess=preprocess_config(state),
            precision=precision,
            modality=state["model_config"]["modality"],
            config_hash=config_hash(state),
        )
        super().__init__(Path(path), contract)
        self.device = resolve_device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 in the torch backend needs a CUDA device (CPU half convolutions are slow or missing)")
        # channels_last: oneDNN (CPU) and cuDNN (GPU) both run these 3x3 convolutions faster in NHWC
        self.model = build_branch(state).to(self.device, memory_format=torch.channels_last)

    @torch.inference_mode()
    def infer_impl(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        face = torch.from_numpy(np.ascontiguousarray(faces, dtype=np.float32)).to(self.device, non_blocking=True)
        spec = torch.from_numpy(np.ascontiguousarray(spectrograms, dtype=np.float32)).to(self.device, non_blocking=True)
        face = face.contiguous(memory_format=torch.channels_last)
        spec = spec.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.precision == "fp16"):
            probs = self.model(face, spec).float().softmax(dim=1)  # [S, K]
        return probs.cpu().numpy()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
