"""Clip + planned segments -> model inputs (face crops and spectrograms). Shared by training and scoring.

Scoring detects faces on the N planned frames; training passes boxes looked up
in the prepare cache instead, so epochs never run MTCNN. Everything after the
box (crop, normalisation, audio window, spectrogram) is this one code path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from edge_emotion.config import PreprocessConfig
from edge_emotion.io.decode import Clip, read_frames
from edge_emotion.preprocess.audio import audio_windows, is_silent, spectrograms
from edge_emotion.preprocess.faces import Box, FaceDetector, crop_face, fill_missing, normalise_faces
from edge_emotion.preprocess.plan import Mode, Segment, plan_segments


@dataclass
class SegmentInputs:
    """The N segments of one clip, ready for a backend."""

    faces: np.ndarray  # [N, 3, 224, 224] float32, normalised
    spectrograms: np.ndarray  # [N, 1, 192, 120] float32
    segments: list[Segment]
    boxes: list[Box | None]  # face box used per segment, full-frame pixels (None: centre crop)
    detected: list[bool]  # per segment: its own frame had a face (False: box borrowed from another frame, or none)
    faceless: int  # segments whose own frame had no detected face
    silent: int  # segments whose audio window is silent


def plan_clip(clip: Clip, config: PreprocessConfig, mode: Mode = "test", rng: np.random.Generator | None = None) -> list[Segment]:
    """Plan the clip's N segments with the config's jitter b."""
    return plan_segments(config.n_segments, clip.frame_count, clip.fps, mode, rng, config.audio.jitter_s)


@contextmanager
def _timed(timings: dict[str, float] | None, stage: str) -> Iterator[None]:
    """Add the block's wall time (seconds) to timings[stage]; a no-op without a dict."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def detect_every(detector: FaceDetector, frames: Sequence[np.ndarray], every: int) -> list[Box | None]:
    """MTCNN on every k-th frame (and the last); the others take the box of the nearest detected one.

    Segments are ~0.2 s apart in a CREMA-D clip and a talking head barely moves
    in that time. k = 2 runs MTCNN on 6 of 10 frames; k = 1 detects on every frame.
    """
    tried = sorted({*range(0, len(frames), every), len(frames) - 1}) if frames else []
    found = dict(zip(tried, detector.detect([frames[i] for i in tried])))
    return [found[min(tried, key=lambda t: abs(t - i))] for i in range(len(frames))]


def extract(
    clip: Clip,
    segments: Sequence[Segment],
    config: PreprocessConfig,
    detector: FaceDetector | None = None,
    boxes: Sequence[Box | None] | None = None,
    timings: dict[str, float] | None = None,
    decoded: Mapping[int, np.ndarray] | None = None,
) -> SegmentInputs:
    """Decode the planned frames, crop faces (detected now, or the given boxes) and compute spectrograms.

    `decoded` holds frames already in memory by index (a live stream's window); without it the planned
    frames are decoded from `clip.path`. `timings`, when given, receives seconds per stage ("frames",
    "faces", "spectrogram"), so scoring and benchmarks can show where time goes without a second code path.
    """
    if (detector is None) == (boxes is None):
        raise ValueError("pass exactly one of detector (scoring) or boxes (training from the cache)")
    indices = [s.frame for s in segments]
    with _timed(timings, "frames"):
        if decoded is None:
            decoded = read_frames(clip, indices)
        frames = [decoded[i] for i in indices]
    with _timed(timings, "faces"):
        if boxes is None:
            boxes = detect_every(detector, frames, config.face.detect_every)
        detected = [b is not None for b in boxes]
        filled, faceless = fill_missing(boxes, indices)
        crops = np.stack([crop_face(f, b, config.face) for f, b in zip(frames, filled)])  # [N, S, S, 3]
        faces = normalise_faces(crops, config.face)
    with _timed(timings, "spectrogram"):
        windows = audio_windows(clip.waveform, clip.sample_rate, np.array([s.centre for s in segments]), config.audio.window_s)
        specs = spectrograms(windows, config.audio)
    return SegmentInputs(
        faces=faces,
        spectrograms=specs,
        segments=list(segments),
        boxes=filled,
        detected=detected,
        faceless=faceless,
        silent=int(is_silent(windows).sum()),
    )
