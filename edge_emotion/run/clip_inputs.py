"""One clip's model inputs, computed from its file: decode, plan the segments, faces and spectrograms, per person.

`load_clip_inputs` is the one per-clip path of scoring (used by `score`, `predict`
and `bench`); it never raises for a bad file: the error text comes back in the
result, so one broken file costs one error row. It runs in this process
(`InlineLoader`) or in worker processes (`InputsJob` on a run/pool.py WorkerPool,
which adds the per-file timeout and crash isolation); `open_loader` picks one.

The file is opened once (decode.open_clip_frames: audio and the planned frames), and the
faces travel as uint8 crops, 4x fewer bytes through a worker's pipe than float32: the
scorer normalises them once, batch by batch, just before the backend (segments.model_faces).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import VideoError
from edge_emotion.io.decode import open_clip_frames
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.preprocess.segments import SegmentInputs, extract_people, plan_clip
from edge_emotion.run.pool import DEFAULT_TIMEOUT_S, FileFn, WorkerPool


@dataclass(frozen=True)
class FaceSetup:
    """Whose faces are scored, and the detector that finds them."""

    which: WhichFaces = "largest"  # the largest person (the paper's one subject), or everyone
    device: str = "cpu"  # MTCNN's device
    nets: Path | None = None  # a folder of detector nets (FP16 ONNX or TensorRT engines); None: the packaged ONNX

    def detector(self, config: PreprocessConfig, threads: int | None = None) -> FaceDetector:
        return FaceDetector(config.face, device=self.device, threads=threads, nets=self.nets)


@dataclass
class ClipInputs:
    """One clip's model inputs, one per person scored, or why there are none. `index`: the clip's place in the work list."""

    index: int
    path: str
    people: list[SegmentInputs] = field(default_factory=list)  # by person id; [] when the clip failed
    fps: float = 0.0
    duration: float | None = None  # seconds; None when the file did not decode
    error: str | None = None
    problems: tuple[str, ...] = ()  # what the file lacks (io/decode.missing_parts): its rows say so
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


def load_clip_inputs(
    path: str | Path, config: PreprocessConfig, detector: FaceDetector, index: int = 0, faces: WhichFaces = "largest"
) -> ClipInputs:
    """Decode (one open), plan (test mode: middle frames, deterministic), track faces, crop, spectrograms.

    The people's faces are uint8 crops (segments.model_faces makes the backend's input of them). Any
    failure becomes `error` (a VideoError's cause, or the exception's type and text for anything
    unexpected) so that one bad file never stops a folder.
    """
    result = ClipInputs(index, str(path))
    try:
        start = time.perf_counter()
        clip, frames = open_clip_frames(path, lambda c: [s.frame for s in plan_clip(c, config)], config.audio.sample_rate)
        result.timings["decode"] = time.perf_counter() - start
        result.fps, result.duration, result.problems = clip.fps, clip.duration, clip.problems
        segments = plan_clip(clip, config)
        result.people = extract_people(clip, segments, config, detector, faces, result.timings, frames, normalise=False)
    except VideoError as exc:
        result.error = exc.cause
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the folder; the row names the cause
        result.error = f"unexpected {type(exc).__name__}: {exc}"
    return result


class InlineLoader:
    """Load clip inputs one after another in this process (predict, benchmarks, workers=0). No timeout."""

    def __init__(self, config: PreprocessConfig, faces: FaceSetup = FaceSetup()) -> None:
        self.config = config
        self.faces = faces
        self.detector = faces.detector(config)

    def run(self, paths: Sequence[Path]) -> Iterator[ClipInputs]:
        for index, path in enumerate(paths):
            yield load_clip_inputs(path, self.config, self.detector, index, self.faces.which)

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
    faces: FaceSetup = FaceSetup()

    def setup(self, threads: int) -> FileFn[ClipInputs]:
        detector = self.faces.detector(self.config, threads)
        return lambda path, index: load_clip_inputs(path, self.config, detector, index, self.faces.which)

    def failed(self, index: int, path: Path, cause: str) -> ClipInputs:
        return ClipInputs(index, str(path), error=cause)


def open_loader(
    config: PreprocessConfig, workers: int, timeout: float = DEFAULT_TIMEOUT_S, faces: FaceSetup = FaceSetup()
) -> InlineLoader | WorkerPool[ClipInputs]:
    """workers = 0: load in this process (no timeout); workers >= 1: a WorkerPool of InputsJob."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        return InlineLoader(config, faces)
    return WorkerPool(InputsJob(config, faces), workers, timeout)
