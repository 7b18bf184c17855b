"""Real segments of the fixture clips, computed once per test process, and a calibration source over them.

Shared by test_export_*.py and test_backends.py through functools caches (pytest
puts tests/ on sys.path), so MTCNN runs on 8 frames per session, not per module;
calibration segments reuse those boxes (the prepare-cache policy) instead of MTCNN.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from edge_emotion import LABELS
from edge_emotion.config import PreprocessConfig
from edge_emotion.io.decode import open_clip
from edge_emotion.preprocess.faces import Box, FaceDetector
from edge_emotion.preprocess.plan import Mode, plan_segments
from edge_emotion.preprocess.segments import SegmentInputs, extract
from edge_emotion.toolchain.calibration.data import ClipRef, SegmentBatch, SegmentLoader, SegmentSource, label_of

FIXTURES = Path(__file__).parent / "fixtures"
CLIPS = (FIXTURES / "1001_DFA_HAP_XX.flv", FIXTURES / "1001_DFA_NEU_XX.flv")
N = 4  # the fresh checkpoint's n_segments


@functools.lru_cache(maxsize=1)
def detector() -> FaceDetector:
    return FaceDetector()


@functools.lru_cache(maxsize=1)
def detected() -> tuple[tuple[SegmentInputs, ...], PreprocessConfig]:
    """Test-mode N segments of each fixture clip, faces by MTCNN (segments.extract with a FaceDetector)."""
    config = PreprocessConfig(n_segments=N)
    out = []
    for path in CLIPS:
        clip = open_clip(path, config.audio.sample_rate)
        segments = plan_segments(N, clip.frame_times, "test", None, config.audio.jitter_s)
        out.append(extract(clip, segments, config, detector=detector()))
    return tuple(out), config


def parity_batch() -> SegmentBatch:
    """The 2 x N real parity segments: [8, 3, 224, 224] faces, [8, 1, 192, 120] spectrograms."""
    inputs, _ = detected()
    return SegmentBatch(
        np.concatenate([i.faces for i in inputs]), np.concatenate([i.spectrograms for i in inputs]), "fixtures"
    )


def labels() -> np.ndarray:
    """[8] class index of each parity segment (from the clip names)."""
    return np.repeat([LABELS.index(label_of(p.stem)) for p in CLIPS], N)


def box_loader(config: PreprocessConfig) -> SegmentLoader:
    """Any number of segments of a fixture clip without MTCNN: each frame borrows the nearest detected box.

    As the prepare cache gives a frame its nearest tracked frame's box; keeps calibration tests fast.
    """
    inputs, _ = detected()
    known = {p.stem: [(s.frame, b) for s, b in zip(i.segments, i.boxes)] for p, i in zip(CLIPS, inputs)}

    def load(ref: ClipRef, n: int, mode: Mode, rng: np.random.Generator | None) -> SegmentInputs:
        clip = open_clip(ref.path, config.audio.sample_rate)
        segments = plan_segments(n, clip.frame_times, mode, rng, config.audio.jitter_s)
        boxes: list[Box | None] = [min(known[ref.name], key=lambda fb: abs(fb[0] - s.frame))[1] for s in segments]
        return extract(clip, segments, config, boxes=boxes)

    return load


def fixture_source(config: PreprocessConfig, segments: int = 32, per_clip: int = 16) -> tuple[SegmentSource, list[int]]:
    """A calibration source over the two fixture clips, and a list that counts loader calls."""
    calls: list[int] = []
    inner = box_loader(config)

    def counting(ref: ClipRef, n: int, mode: Mode, rng: np.random.Generator | None) -> SegmentInputs:
        calls.append(n)
        return inner(ref, n, mode, rng)

    refs = [ClipRef(p, p.stem, label_of(p.stem)) for p in CLIPS]
    return SegmentSource(refs, counting, segments=segments, per_clip=per_clip), calls
