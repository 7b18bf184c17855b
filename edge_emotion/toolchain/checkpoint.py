"""Checkpoints: one dict of tensors and plain values, written atomically, read with weights_only=True.

Layout (all keys plain types, so `torch.load(weights_only=True)` accepts it and a
pickle carrying code is refused):
    format         "edge-emotion-checkpoint/1"
    model          SegmentBranch state_dict
    model_config   {"n_classes", "modality", "widths"}
    labels         list of class names, in output order
    preprocess     PreprocessConfig.to_dict()
    train_config   the training options (for the config hash and for resume)
    ...            training state for --resume (optimizer, step, epoch, rng)
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import ArtifactError
from edge_emotion.io.atomic import atomic_path
from edge_emotion.io.filekind import describe, sniff
from edge_emotion.toolchain.model import SegmentBranch

FORMAT = "edge-emotion-checkpoint/1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (must hold model, model_config, labels, preprocess) atomically."""
    missing = {"model", "model_config", "labels", "preprocess"} - state.keys()
    if missing:
        raise ValueError(f"checkpoint state lacks {sorted(missing)}")
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; anything that is not weights and plain values is refused."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "checkpoint not found")
    kind = sniff(path)  # an ONNX model, an engine or a video is named for what it is, not as an unsafe pickle
    if kind != "checkpoint":
        what = "neither a zip archive nor a pickle" if kind == "unknown" else describe(kind)
        hint = ": give the checkpoint.pt it was trained into" if kind in ("onnx", "engine") else ""
        raise ArtifactError(path, f"not a PyTorch checkpoint ({what}){hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ArtifactError(path, f"refused: the checkpoint holds objects other than weights ({exc})") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ArtifactError(path, f"not a readable checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ArtifactError(path, f"not an edge-emotion checkpoint (expected format {FORMAT!r})")
    return state


def build_branch(state: dict[str, Any]) -> SegmentBranch:
    """The SegmentBranch a checkpoint describes, with its weights loaded, in eval mode."""
    cfg = state["model_config"]
    branch = SegmentBranch(n_classes=int(cfg["n_classes"]), modality=cfg["modality"], widths=tuple(cfg["widths"]))
    branch.load_state_dict(state["model"])
    return branch.eval()


def preprocess_config(state: dict[str, Any]) -> PreprocessConfig:
    return PreprocessConfig.from_dict(state["preprocess"])


def config_hash(state: dict[str, Any]) -> str:
    """sha256 of the training, model and preprocessing configuration (not the weights)."""
    blob = json.dumps(
        {k: state.get(k) for k in ("train_config", "model_config", "preprocess", "labels")}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()
