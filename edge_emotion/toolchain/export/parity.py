"""Parity: the same real segments through torch (the reference) and an artifact; refuse beyond tolerance.

In the spirit of `polygraphy run --onnxrt --trt`: values are compared, not
lengths. Both sides go through the one Backend interface, so ONNX Runtime and
TensorRT artifacts are checked by the same code.

Tolerances (on softmax probabilities, which live in [0, 1]):
- fp32: max |diff| <= 1e-4 (ONNX Runtime matches torch to ~1e-7 on this net);
- fp16: max |diff| <= 1e-2 (half storage of activations, ~3 significant digits);
- int8: top-1 agreement >= 0.9 and max |diff| <= 0.25 (quantization moves
  probabilities; what must survive is the decision).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion.backends import open_backend
from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import ArtifactError
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.toolchain.calibration.data import ClipRef, SegmentBatch, detected_loader, list_videos, order_clips


@dataclass(frozen=True)
class Tolerance:
    """Limits a candidate must meet against the reference; None = not checked."""

    max_abs: float | None = None
    min_agreement: float | None = None
    #: segments whose reference top-1 leads the runner-up by less than this are not counted for agreement:
    #: a near-tie may flip either way without any decision that matters changing
    decisive_margin: float = 0.0


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs=1e-4),
    "fp16": Tolerance(max_abs=1e-2),
    "int8": Tolerance(max_abs=0.25, min_agreement=0.9, decisive_margin=0.05),
}


@dataclass(frozen=True)
class ParityReport:
    """How far an artifact's probabilities are from torch's on the same real segments."""

    artifact: str
    backend: str
    precision: str
    segments: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float  # over all segments
    decisive_segments: int  # segments whose reference margin >= tolerance.decisive_margin
    decisive_agreement: float  # top-1 agreement over those (1.0 when there are none)
    tolerance: Tolerance

    @property
    def failures(self) -> list[str]:
        """Each limit broken, in words; empty when the artifact passes."""
        out = []
        if self.tolerance.max_abs is not None and not self.max_abs_diff <= self.tolerance.max_abs:
            out.append(f"max |diff| {self.max_abs_diff:.3g} > {self.tolerance.max_abs:g}")
        if self.tolerance.min_agreement is not None and not self.decisive_agreement >= self.tolerance.min_agreement:
            out.append(
                f"top-1 agreement {self.decisive_agreement:.3f} on {self.decisive_segments} decisive segments "
                f"< {self.tolerance.min_agreement:g}"
            )
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL: " + "; ".join(self.failures)
        return (
            f"parity {self.backend} {self.precision} vs torch fp32 on {self.segments} real segments: "
            f"max |diff| {self.max_abs_diff:.3g}, mean |diff| {self.mean_abs_diff:.3g}, "
            f"top-1 agreement {self.top1_agreement:.3f} (decisive: {self.decisive_agreement:.3f} on {self.decisive_segments}) "
            f"-> {verdict}"
        )

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed, "failures": self.failures}, sort_keys=True)


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    precision: str,
    tolerance: Tolerance | None = None,
    artifact: str = "",
    backend: str = "",
) -> ParityReport:
    """[S, K] reference vs candidate probabilities -> report (tolerance defaults by precision)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"reference {reference.shape} and candidate {candidate.shape} differ in shape")
    tolerance = tolerance or DEFAULT_TOLERANCES[precision]
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))  # [S, K]
    agree = reference.argmax(1) == candidate.argmax(1)  # [S]
    top2 = np.sort(reference, axis=1)[:, -2:] if reference.shape[1] > 1 else np.zeros((reference.shape[0], 2))  # [S, 2]
    decisive = (top2[:, 1] - top2[:, 0]) >= tolerance.decisive_margin  # [S]
    return ParityReport(
        artifact=artifact,
        backend=backend,
        precision=precision,
        segments=int(reference.shape[0]),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        top1_agreement=float(agree.mean()) if diff.size else 1.0,
        decisive_segments=int(decisive.sum()),
        decisive_agreement=float(agree[decisive].mean()) if decisive.any() else 1.0,
        tolerance=tolerance,
    )


PARITY_SEED = 1  # calibration orders clips with seed 0; another order keeps parity mostly off them


def parity_clips(paths: Sequence[str | Path], limit: int = 4) -> list[ClipRef]:
    """Video files, or folders of them, -> at most `limit` clips (spread over classes, deterministic).

    With a corpus folder, the order differs from calibration's (PARITY_SEED), so
    an INT8 parity check rarely runs on its own calibration clips.
    """
    refs: list[ClipRef] = []
    for p in map(Path, paths):
        refs += list_videos(p) if p.is_dir() else [ClipRef(p, p.stem, "")]
    if not refs:
        raise ValueError(f"no videos for the parity check in {', '.join(map(str, paths))}")
    return order_clips(refs, PARITY_SEED)[:limit]


def load_inputs(
    paths: Sequence[str | Path],
    config: PreprocessConfig,
    detector: FaceDetector | None = None,
    per_clip: int | None = None,
    limit: int = 4,
) -> SegmentBatch:
    """Real parity inputs: test-mode segments of up to `limit` clips (faces by MTCNN, the scoring path)."""
    load = detected_loader(config, detector or FaceDetector(config.face))
    refs = parity_clips(paths, limit)
    batches = [load(ref, per_clip or config.n_segments, "test", None) for ref in refs]
    faces = np.concatenate([b.faces for b in batches])  # [clips * per_clip, 3, 224, 224]
    specs = np.concatenate([b.spectrograms for b in batches])  # [clips * per_clip, 1, 192, 120]
    return SegmentBatch(faces, specs, ",".join(ref.name for ref in refs))


def run_parity(
    artifact: str | Path,
    checkpoint: str | Path,
    inputs: SegmentBatch,
    backend: str | None = None,
    tolerance: Tolerance | None = None,
    **backend_options: Any,
) -> ParityReport:
    """Run `inputs` through torch (CPU, fp32) and the artifact (its backend by suffix, or `backend`) and compare."""
    with open_backend(checkpoint, "torch", device="cpu") as torch_backend:
        reference = torch_backend.infer(inputs.faces, inputs.spectrograms)  # [S, K]
    with open_backend(artifact, backend, **backend_options) as candidate:
        probs = candidate.infer(inputs.faces, inputs.spectrograms)  # [S, K]
        return compare(reference, probs, candidate.precision, tolerance, str(artifact), candidate.name)


def require_parity(report: ParityReport, path: str | Path) -> None:
    """Refuse an artifact that failed its parity check (ArtifactError naming the file and the broken limits)."""
    if not report.passed:
        raise ArtifactError(path, f"refused, parity check failed: {'; '.join(report.failures)} ({report.summary()})")


def synthetic_parity_videos(folder: str | Path, seed: int = 0) -> Path:
    """Six generated clips (one synthetic actor, every emotion) for when no real videos are given.

    Parity is about numerics, not accuracy: these clips go through the same decode,
    MTCNN and spectrogram path as real ones, so the comparison is still on real
    preprocessed inputs, not random tensors.
    """
    from edge_emotion.toolchain.synth import make_corpus

    make_corpus(folder, actors=1, clips_per_class=1, seed=seed)
    return Path(folder) / "VideoFlash"

