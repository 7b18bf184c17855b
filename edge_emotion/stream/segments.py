"""A stream's segments, each computed once: its frame's faces (the epoch's tracker), its spectrogram, and later,
per person, the backend's probabilities for its face crop (evaluate.py, when a window first needs them).

A SegmentRecord keeps its RGB frame while a window may still need a crop of it (a person first seen later
in the window borrows a box onto it). A SegmentStore holds one epoch's records from the next window's first
segment on, and its track store (preprocess/tracks.py) the boxes seen from N - 1 segments before (a borrowed
box may come from there): N frames or so at any time, whatever the stream's length.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edge_emotion.config import SpectrogramParams
from edge_emotion.detector.tracker import FaceTracker
from edge_emotion.io.decode import upright
from edge_emotion.preprocess.audio import is_silent, spectrograms
from edge_emotion.preprocess.faces import Box, FaceDetector
from edge_emotion.preprocess.tracks import PersonNumbers, TrackStore
from edge_emotion.stream.scheduler import SegmentWork


@dataclass(frozen=True)
class Scored:
    """One segment's crop for one person through the backend."""

    probs: np.ndarray  # [K]
    box: Box | None  # the box the crop used (None: centre crop)
    own: bool  # the person's own face on this frame (False: borrowed box, or a centre crop)


@dataclass
class SegmentRecord:
    j: int  # the segment's index on its epoch's grid
    frame: np.ndarray  # [H, W, 3] uint8 RGB, upright
    faces: dict[int, Box]  # stream person number -> their face box on this frame
    spectrogram: np.ndarray  # [1, F, T] float32
    silent: bool
    arrival: float  # time.monotonic() when the last of its inputs arrived
    time: float = 0.0  # its frame's stream time (its audio window's centre)
    seq: int = 0  # its frame's number in the run
    scored: dict[int | None, Scored] = field(default_factory=dict)  # person (None: centre crop) -> probabilities


def compute_segment(
    work: SegmentWork, detector: FaceDetector, tracker: FaceTracker, numbers: PersonNumbers, audio: SpectrogramParams,
    timings: dict[str, float],
) -> SegmentRecord:
    """The segment's frame as RGB, its faces (the tracker's next frame), its spectrogram; seconds per stage in `timings`."""
    start = time.perf_counter()
    frame = upright(work.frame)  # [H, W, 3] uint8
    tick = time.perf_counter()
    faces = numbers.number(detector.track([frame], tracker)[0])
    tock = time.perf_counter()
    spectrogram = spectrograms(work.audio[None], audio)[0]  # [1, F, T]
    silent = bool(is_silent(work.audio[None])[0])
    end = time.perf_counter()
    for stage, seconds in (("frames", tick - start), ("faces", tock - tick), ("spectrogram", end - tock)):
        timings[stage] = timings.get(stage, 0.0) + seconds
    return SegmentRecord(work.j, frame, faces, spectrogram, silent, work.arrival, work.time, work.seq)


class SegmentStore:
    """One epoch's computed segments by grid index."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.records: dict[int, SegmentRecord] = {}
        self.tracks = TrackStore()  # the epoch's boxes by grid index j, also of the N - 1 segments before

    def add(self, record: SegmentRecord) -> None:
        self.records[record.j] = record
        self.tracks.add(record.j, record.faces)

    def window(self, segments: range) -> list[SegmentRecord]:
        missing = [j for j in segments if j not in self.records]
        if missing:
            raise RuntimeError(f"segments {missing} of a window were never computed")  # the scheduler's promise
        return [self.records[j] for j in segments]

    def forget_before(self, j: int) -> None:
        """No window will start before segment j: drop the frames before it, and the boxes before j - (N - 1)."""
        for q in [q for q in self.records if q < j]:
            del self.records[q]
        self.tracks.forget_before(j - self.n + 1)
