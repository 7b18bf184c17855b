"""One window -> one event per person scored, with `score`'s own code: plan_clip (test mode),
segments.extract_people (faces, spectrograms), score_clips (backend), build_rows (consensus). Only where
the frames come from differs, and that the people are numbered across windows (stream/people.py)."""

from __future__ import annotations

import time

import numpy as np

from edge_emotion.backends.base import Backend
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.preprocess.segments import extract_people
from edge_emotion.run.clip_inputs import ClipInputs
from edge_emotion.run.rows import FileKey, build_rows
from edge_emotion.run.score import score_clips
from edge_emotion.stream.events import Event
from edge_emotion.stream.people import StreamPeople
from edge_emotion.stream.scheduler import DueWindow
from edge_emotion.stream.window import build_window


def warm_up(backend: Backend, detector: FaceDetector) -> None:
    """One detection and one backend call on blank inputs before the source opens: the first window's
    latency is then the pipeline's, not the libraries' start-up (MTCNN's first call, ORT's first run)."""
    config = backend.contract.preprocess
    n, size, shape = config.n_segments, config.face.size, config.audio.shape
    detector.detect([np.zeros((240, 320, 3), np.uint8)])
    backend.infer(np.zeros((n, 3, size, size), np.float32), np.zeros((n, 1, *shape), np.float32))


def evaluate_window(
    due: DueWindow, name: str, backend: Backend, detector: FaceDetector, dropped_frames: int,
    faces: WhichFaces = "largest", people: StreamPeople | None = None,
) -> tuple[list[Event], dict[str, float]]:
    """The window's events, one per person scored (`dropped_frames`: the stream's count so far; `people`: the
    stream's numbering, kept across windows), and the seconds each stage took."""
    config = backend.contract.preprocess
    begin = time.perf_counter()
    win = build_window(due.k, due.schedule, due.video, due.audio, config, name)
    timings = {"window": time.perf_counter() - begin}
    inputs = extract_people(win.clip, win.segments, config, detector, faces, timings, win.decoded)
    clip = ClipInputs(due.k, name, inputs, win.clip.fps, win.clip.duration, timings=timings)
    scored = next(score_clips([clip], backend, batch_size=max(1, config.n_segments)))
    start = time.perf_counter()
    rows = build_rows(scored.clip, scored.probs, backend.contract.labels, FileKey(name, -1, -1))
    numbers = (people or StreamPeople()).number(inputs)
    events: list[Event] = [
        {
            "t_start": round(win.t_start, 3),
            "t_end": round(win.t_end, 3),
            "person": person,
            "label": row["label"],
            "probabilities": row["probabilities"],
            "latency_ms": 0.0,
            "dropped_frames": dropped_frames,
            "faceless": row["faceless"],
            "silent": row["silent"],
        }
        for person, row in zip(numbers, rows)
    ]
    consensus_s = time.perf_counter() - start
    latency_ms = round((time.monotonic() - win.arrival) * 1000, 1)
    for event in events:
        event["latency_ms"] = latency_ms
    stages = {
        "window": timings["window"] + timings.get("frames", 0.0),
        "faces": timings.get("faces", 0.0),
        "spectrogram": timings.get("spectrogram", 0.0),
        "inference": scored.infer_s,
        "consensus": consensus_s,
    }
    return events, stages
