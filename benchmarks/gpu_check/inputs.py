"""What the steps run on: the real fixture clips, a checkpoint of the real architecture, reference segments."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu_check.harness import Check, short

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def fixture_clips() -> list[Path]:
    """The two real CREMA-D clips (FLV, VP6F 480x360, MP3)."""
    return sorted(FIXTURES.glob("*.flv"))


def face_detector(params: Any, device: str) -> tuple[Any | None, str]:
    """(FaceDetector, '') or (None, why) when it cannot be built here (onnxruntime, which runs its nets, missing)."""
    from edge_emotion.preprocess.faces import FaceDetector

    try:
        return FaceDetector(params, device=device), ""
    except ImportError as exc:  # MissingDependencyError is one, with the install hint
        return None, short(exc)


def fresh_checkpoint(check: Check) -> Path:
    """An untrained checkpoint of the real architecture (N = 10), BatchNorm statistics from 3 random batches.

    Speed does not depend on the weights; non-trivial statistics keep parity from comparing near-identity BNs.
    """
    path = check.work / "fresh.pt"
    if path.exists():
        return path
    import torch

    from edge_emotion import LABELS
    from edge_emotion.config import PreprocessConfig
    from edge_emotion.toolchain.checkpoint import save_checkpoint
    from edge_emotion.toolchain.model import WIDTHS, SegmentBranch

    torch.manual_seed(0)
    branch = SegmentBranch()
    with torch.no_grad():
        for _ in range(3):
            branch(torch.randn(4, 3, 224, 224), torch.randn(4, 1, 192, 120))
    state = {"model": branch.state_dict(), "model_config": {"n_classes": len(LABELS), "modality": "both",
             "widths": list(WIDTHS)}, "labels": list(LABELS), "preprocess": PreprocessConfig().to_dict(),
             "train_config": {"note": "gpu_check: untrained weights"}}  # fmt: skip
    save_checkpoint(path, state)
    return path


def model_checkpoint(check: Check) -> tuple[Path, str]:
    """The checkpoint `train` wrote in this run if any (trained weights), else a fresh one; and which it is."""
    trained = check.state.get("trained_checkpoint")
    if trained is not None and Path(trained).exists():
        return Path(trained), "trained by the train step"
    return fresh_checkpoint(check), "untrained (fresh) weights"


def fixture_segments(config: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Real segments of the fixture clips, faces from the CPU detector (centre crops if it cannot be built).

    Returns faces [S, 3, 224, 224], spectrograms [S, 1, 192, 120] float32, and how the faces were cut.
    """
    from edge_emotion.io.decode import open_clip
    from edge_emotion.preprocess.segments import extract, plan_clip

    detector, why = face_detector(config.face, "cpu")
    faces, specs = [], []
    for path in fixture_clips():
        clip = open_clip(path, config.audio.sample_rate)
        segments = plan_clip(clip, config)
        if detector is not None:
            inputs = extract(clip, segments, config, detector=detector)
        else:
            inputs = extract(clip, segments, config, boxes=[None] * len(segments))
        faces.append(inputs.faces)
        specs.append(inputs.spectrograms)
    how = "faces from FaceDetector on the CPU" if detector is not None else f"centre crops ({why})"
    return np.concatenate(faces), np.concatenate(specs), how


def reference_inputs(check: Check) -> dict[str, Any]:
    """Fixture segments and the torch CPU FP32 probabilities of the run's checkpoint on them (made once)."""
    if "reference" in check.state:
        return check.state["reference"]
    from edge_emotion.backends import open_backend

    checkpoint, weights = model_checkpoint(check)
    with open_backend(checkpoint, "torch", device="cpu") as backend:
        config = replace(backend.contract.preprocess, n_segments=check.sizes.parity_segments)
        faces, specs, how = fixture_segments(config)
        probs = backend.infer(faces, specs)  # [S, K]
    check.state["reference"] = {"checkpoint": checkpoint, "weights": weights, "faces": faces, "specs": specs,
                                "how": how, "probs": probs}  # fmt: skip
    return check.state["reference"]
