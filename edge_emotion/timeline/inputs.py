"""A segment's model inputs, computed one way for a recording's pass (timeline/recording.py) and a live source's
epoch (stream/segments.py): its frame's faces through the one tracker into the track store, the spectrograms and
silent flags of its audio window, and a person's uint8 crops on held frames, by boxes the track store's one borrowing
rule gave (preprocess/tracks.py), as the Crops of a Piece for the one scorer (run/score.py SegmentBatcher).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from edge_emotion.config import FaceParams, SpectrogramParams
from edge_emotion.detector.tracker import FaceTracker
from edge_emotion.preprocess.audio import is_silent, spectrograms
from edge_emotion.preprocess.faces import FaceDetector, crop_face
from edge_emotion.preprocess.tracks import Crop, PersonNumbers, TrackStore
from edge_emotion.run.pieces import Crops


def track_frame(
    detector: FaceDetector, tracker: FaceTracker, tracks: TrackStore, position: int, frame: np.ndarray,
    timings: dict[str, float], numbers: PersonNumbers | None = None,
) -> None:
    """The frame's faces (the tracker's next frame) into the store at `position`; a live source numbers them over its
    epochs (`numbers`). Seconds into timings["faces"]."""
    start = time.perf_counter()
    faces = detector.track([frame], tracker)[0]
    tracks.add(position, faces if numbers is None else numbers.number(faces))
    timings["faces"] = timings.get("faces", 0.0) + time.perf_counter() - start


def audio_inputs(windows: np.ndarray, params: SpectrogramParams) -> tuple[np.ndarray, np.ndarray]:
    """[C, samples] audio windows -> [C, 1, F, T] spectrograms and [C] whether each is silent."""
    return spectrograms(windows, params), is_silent(windows)


def person_crops(
    person: int | None, used: Sequence[Crop], frame_at: Callable[[int], np.ndarray], positions: np.ndarray, params: FaceParams,
) -> Crops:
    """One person's crops (`used`: by the borrowing rule; a None box is a centre crop) on the held frames, as rows
    into a piece's sorted `positions` [C]."""
    faces = np.stack([crop_face(frame_at(c.position), c.box, params) for c in used])  # [M, S, S, 3] uint8
    rows = np.searchsorted(positions, [c.position for c in used])  # [M]
    return Crops(person, rows, faces, [c.box for c in used], np.array([c.own for c in used], bool))
