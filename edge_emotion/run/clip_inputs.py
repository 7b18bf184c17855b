"""One clip's model inputs, computed from its file: decode, plan the segments, faces and spectrograms.

`load_clip_inputs` is the one per-clip path of scoring (used by `score`, `predict`
and `bench`); it never raises for a bad file: the error text comes back in the
result, so one broken file costs one error row. It runs in this process
(`InlineLoader`) or in worker processes (`InputsJob` on a run/pool.py WorkerPool,
which adds the per-file timeout and crash isolation); `open_loader` picks one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import VideoError
from edge_emotion.io.decode import open_clip
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.segments import SegmentInputs, extract, plan_clip
from edge_emotion.run.pool import DEFAULT_TIMEOUT_S, FileFn, WorkerPool


@dataclass
class ClipInputs:
    """One clip's model inputs, or why there are none. `index` is the clip's place in the work list."""

    index: int
    path: str
    inputs: SegmentInputs | None = None
    fps: float = 0.0
    duration: float | None = None  # seconds; None when the file did not decode
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: decode, frames, faces, spectrogram

    def stage_seconds(self) -> dict[str, float]:
        """Preprocessing seconds as reports name the stages: decode (demux + audio, then the planned frames),
        faces, spectrogram."""
        t = self.timings
        return {
            "decode": t.get("decode", 0.0) + t.get("frames", 0.0),
            "faces": t.get("faces", 0.0),
            "spectrogram": t.get("spectrogram", 0.0),
        }


def load_clip_inputs(path: str | Path, config: PreprocessConfig, detector: FaceDetector, index: int = 0) -> ClipInputs:
    """Decode, plan (test mode: middle frames, deterministic), detect faces, crop, spectrograms.

    Any failure becomes `error` (a VideoError's cause, or the exception's type and
    text for anything unexpected) so that one bad file never stops a folder.
    """
    result = ClipInputs(index, str(path))
    try:
        start = time.perf_counter()
        clip = open_clip(path, config.audio.sample_rate)
        result.timings["decode"] = time.perf_counter() - start
        result.fps, result.duration = clip.fps, clip.duration
        result.inputs = extract(clip, plan_clip(clip, config), config, detector=detector, timings=result.timings)
    except VideoError as exc:
        result.error = exc.cause
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the folder; the row names the cause
        result.error = f"unexpected {type(exc).__name__}: {exc}"
    return result


class InlineLoader:
    """Load clip inputs one after another in this process (predict, benchmarks, workers=0). No timeout."""

    def __init__(self, config: PreprocessConfig, face_device: str = "cpu") -> None:
        self.config = config
        self.detector = FaceDetector(config.face, device=face_device)

    def run(self, paths: Sequence[Path]) -> Iterator[ClipInputs]:
        for index, path in enumerate(paths):
            yield load_clip_inputs(path, self.config, self.detector, index)

    def close(self) -> None:
        """Nothing to release; here so both loaders share one interface."""

    def __enter__(self) -> InlineLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class InputsJob:
    """The scoring job for a WorkerPool: build the FaceDetector once per worker, then `load_clip_inputs` each file."""

    config: PreprocessConfig
    face_device: str = "cpu"

    def setup(self, threads: int) -> FileFn[ClipInputs]:
        detector = FaceDetector(self.config.face, device=self.face_device, threads=threads)
        return lambda path, index: load_clip_inputs(path, self.config, detector, index)

    def failed(self, index: int, path: Path, cause: str) -> ClipInputs:
        return ClipInputs(index, str(path), error=cause)


def open_loader(
    config: PreprocessConfig, workers: int, timeout: float = DEFAULT_TIMEOUT_S, face_device: str = "cpu"
) -> InlineLoader | WorkerPool[ClipInputs]:
    """workers = 0: load in this process (no timeout); workers >= 1: a WorkerPool of InputsJob."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        return InlineLoader(config, face_device)
    return WorkerPool(InputsJob(config, face_device), workers, timeout)
