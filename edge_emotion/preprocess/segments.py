"""Clip + planned segments -> model inputs (face crops and spectrograms), per person. Shared by training and scoring.

Scoring tracks faces over the N planned frames (edge_emotion.detector.tracker) and
makes one set of inputs per person (the largest, or everyone); training passes boxes
looked up in the prepare cache instead, so epochs never run MTCNN. Everything after
the box (crop, normalisation, audio window, spectrogram) is this one code path, and
the spectrograms, which do not depend on the person, are computed once per clip.

Scoring's workers ask for the face crops as uint8 (`normalise=False`): 4x fewer bytes through the
pipe than float32, and the parent makes the model's input of them once (`model_faces`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from edge_emotion.config import FaceParams, PreprocessConfig
from edge_emotion.io.decode import Clip, read_frames
from edge_emotion.preprocess.audio import audio_windows, is_silent, spectrograms
from edge_emotion.preprocess.faces import Box, FaceDetector, crop_face, normalise_faces
from edge_emotion.preprocess.people import Person, WhichFaces, chosen_people
from edge_emotion.preprocess.plan import Mode, Segment, plan_segments
from edge_emotion.preprocess.tracks import borrow_boxes


@dataclass
class SegmentInputs:
    """The N segments of one clip for one person, ready for a backend."""

    faces: np.ndarray  # [N, 3, 224, 224] float32, normalised; [N, 224, 224, 3] uint8 crops with normalise=False
    spectrograms: np.ndarray  # [N, 1, 192, 120] float32 (the same array for every person of a clip)
    segments: list[Segment]
    boxes: list[Box | None]  # face box used per segment, full-frame pixels (None: centre crop)
    detected: list[bool]  # per segment: this person's own face was found on its frame (False: borrowed, or none)
    faceless: int  # segments without this person's own face
    silent: int  # segments whose audio window is silent
    person: int = 0  # the face track (0, 1, 2 ... in order of first appearance); 0 for boxes given by the caller
    people: int = 1  # people (face tracks) seen on the clip's planned frames, this one included; 0: no face at all


def model_faces(faces: np.ndarray, params: FaceParams) -> np.ndarray:
    """The backend's face input: [N, 3, S, S] float32 as it is, or [N, S, S, 3] uint8 crops normalised now."""
    return normalise_faces(faces, params) if faces.dtype == np.uint8 else faces


def plan_clip(clip: Clip, config: PreprocessConfig, mode: Mode = "test", rng: np.random.Generator | None = None) -> list[Segment]:
    """Plan the clip's N segments with the config's jitter b."""
    return plan_segments(config.n_segments, clip.frame_times, mode, rng, config.audio.jitter_s)


@contextmanager
def _timed(timings: dict[str, float] | None, stage: str) -> Iterator[None]:
    """Add the block's wall time (seconds) to timings[stage]; a no-op without a dict."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _planned_frames(clip: Clip, segments: Sequence[Segment], decoded: Mapping[int, np.ndarray] | None) -> list[np.ndarray]:
    if decoded is None:
        decoded = read_frames(clip, [s.frame for s in segments])
    return [decoded[s.frame] for s in segments]


def _face_inputs(
    frames: Sequence[np.ndarray], segments: Sequence[Segment], boxes: Sequence[Box | None], config: PreprocessConfig,
    normalise: bool = True,
) -> tuple[np.ndarray, list[Box | None], list[bool], int]:
    """One person's boxes (None where unseen) -> (faces [N, 3, S, S] float32, or the [N, S, S, 3] uint8 crops
    without `normalise`; boxes used, detected, faceless)."""
    detected = [b is not None for b in boxes]
    filled, faceless = borrow_boxes(boxes)
    crops = np.stack([crop_face(f, b, config.face) for f, b in zip(frames, filled)])  # [N, S, S, 3]
    return normalise_faces(crops, config.face) if normalise else crops, filled, detected, faceless


def _audio_inputs(clip: Clip, segments: Sequence[Segment], config: PreprocessConfig) -> tuple[np.ndarray, int]:
    """(spectrograms [N, 1, F, T], how many windows are silent)."""
    windows = audio_windows(clip.waveform, clip.sample_rate, np.array([s.centre for s in segments]), config.audio.window_s)
    return spectrograms(windows, config.audio), int(is_silent(windows).sum())


def track_planned(
    clip: Clip,
    segments: Sequence[Segment],
    detector: FaceDetector,
    faces: WhichFaces = "largest",
    decoded: Mapping[int, np.ndarray] | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[list[np.ndarray], list[Person], int]:
    """Decode the planned frames and track their faces with one fresh tracker: (frames, the chosen people, how many
    people were seen). Scoring and the prepare cache both track through here, so they see the same boxes."""
    with _timed(timings, "frames"):
        frames = _planned_frames(clip, segments, decoded)
    with _timed(timings, "faces"):
        tracked = detector.track(frames)
        people = chosen_people(tracked, faces)
    return frames, people, len({face.person for faces_on_frame in tracked for face in faces_on_frame})


def extract_people(
    clip: Clip,
    segments: Sequence[Segment],
    config: PreprocessConfig,
    detector: FaceDetector,
    faces: WhichFaces = "largest",
    timings: dict[str, float] | None = None,
    decoded: Mapping[int, np.ndarray] | None = None,
    normalise: bool = True,
) -> list[SegmentInputs]:
    """Decode the planned frames, track the faces on them, and make each chosen person's inputs.

    faces="largest": one element, the person whose face is largest over the clip (the same person in every
    segment); "all": one element per person, by person id. A clip without any face gives one element of
    centre crops (person 0, every segment faceless), so every file still yields a result.
    `decoded` holds frames already in memory by index (a live stream's window); without it the planned
    frames are decoded from `clip.path`. `timings`, when given, receives seconds per stage ("frames",
    "faces", "spectrogram"), so scoring and benchmarks can show where time goes without a second code path.
    `normalise=False`: `faces` holds the uint8 crops (see `model_faces`).
    """
    frames, people, seen = track_planned(clip, segments, detector, faces, decoded, timings)
    with _timed(timings, "faces"):
        per_person = [(p.person, _face_inputs(frames, segments, p.boxes, config, normalise)) for p in people] or [
            (0, _face_inputs(frames, segments, [None] * len(segments), config, normalise))
        ]
    with _timed(timings, "spectrogram"):
        specs, silent = _audio_inputs(clip, segments, config)
    return [
        SegmentInputs(crops, specs, list(segments), filled, detected, faceless, silent, person, seen)
        for person, (crops, filled, detected, faceless) in per_person
    ]


def extract(
    clip: Clip,
    segments: Sequence[Segment],
    config: PreprocessConfig,
    detector: FaceDetector | None = None,
    boxes: Sequence[Box | None] | None = None,
    timings: dict[str, float] | None = None,
    decoded: Mapping[int, np.ndarray] | None = None,
) -> SegmentInputs:
    """One clip's inputs: the largest person's (faces tracked by `detector`), or with the given per-segment `boxes`
    (training from the prepare cache; None entries borrow by the one borrowing rule). Stages and arguments as in
    `extract_people`."""
    if (detector is None) == (boxes is None):
        raise ValueError("pass exactly one of detector (scoring) or boxes (training from the cache)")
    if detector is not None:
        return extract_people(clip, segments, config, detector, "largest", timings, decoded)[0]
    with _timed(timings, "frames"):
        frames = _planned_frames(clip, segments, decoded)
    with _timed(timings, "faces"):
        crops, filled, detected, faceless = _face_inputs(frames, segments, list(boxes or []), config)
    with _timed(timings, "spectrogram"):
        specs, silent = _audio_inputs(clip, segments, config)
    return SegmentInputs(crops, specs, list(segments), filled, detected, faceless, silent, people=int(faceless < len(segments)))
