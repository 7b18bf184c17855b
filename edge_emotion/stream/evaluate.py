"""One window of a stream -> its events: whose window it is, the crops no earlier window scored through the backend
in one call, and its results (run/result.py: the consensus of its N segments' probabilities), as `score --window`
builds a file's. With one person in view a window scores hop / L new crops.

People follow `score --window`'s rules through the epoch's track store (preprocess/tracks.py): everyone seen on one
of the window's segments (`--faces all`; a window without anyone once, on centre crops, person null) or its main
person (`--faces largest`, tracks.MainPerson); a segment without the person's own face borrows by the one borrowing
rule with the window's last segment as the newest it may borrow from (a file may borrow from a nearer sighting after
that window; a stream cannot wait for one, and a crop once scored is never scored again)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_emotion.backends.base import Backend
from edge_emotion.preprocess.faces import Box, FaceDetector, crop_face, normalise_faces
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.preprocess.tracks import MainPerson
from edge_emotion.run.result import Live, segment_result, window_result
from edge_emotion.stream.events import Event, wall_time
from edge_emotion.stream.segments import Scored, SegmentRecord, SegmentStore
from edge_emotion.stream.window import EpochGrid


def warm_up(backend: Backend, detector: FaceDetector) -> None:
    """One detection and one backend call on blank inputs before the source opens: the first window's
    latency is then the pipeline's, not the libraries' start-up (MTCNN's first call, ORT's first run)."""
    config = backend.contract.preprocess
    size, shape = config.face.size, config.audio.shape
    detector.detect([np.zeros((240, 320, 3), np.uint8)])
    backend.infer(np.zeros((1, 3, size, size), np.float32), np.zeros((1, 1, *shape), np.float32))


@dataclass
class WindowContext:
    """What every window of a run needs besides its segments."""

    backend: Backend
    faces: WhichFaces
    wall: Callable[[float], float]  # stream time -> epoch seconds (source.StreamClock.wall)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, added up over the run
    backend_rows: int = 0
    last_wall: float = 0.0  # the last event's window end on the wall clock: events never go back
    source: str = ""  # the events' path: the source's URL or file


def evaluate_window(
    k: int, grid: EpochGrid, store: SegmentStore, main: MainPerson, epoch: int, dropped_frames: int, ctx: WindowContext
) -> list[Event]:
    """Window k's events, one per person reported (`dropped_frames`: the stream's count so far)."""
    segments = grid.segments(k)
    records = store.window(segments)
    seen = list(store.tracks.people_in(segments))
    if ctx.faces == "all":
        people: list[int | None] = list(seen) or [None]
    else:
        people = [main.choose(store.tracks.areas(segments))]
    _score_missing(records, people, store, segments.stop - 1, ctx)
    t_start, t_end = grid.window_times(k)
    ctx.last_wall = max(ctx.last_wall, ctx.wall(t_end))
    latency_ms = round((time.monotonic() - max(r.arrival for r in records)) * 1000, 1)
    live = Live(epoch, wall_time(ctx.last_wall), latency_ms, dropped_frames)
    start = time.perf_counter()
    events = []
    for person in people:
        scored = [r.scored[person] for r in records]
        events.append(window_result(
            "stream", None, ctx.source, person=person, people=len(store.tracks.people_in(segments)), window=k, n_windows=None,
            t_start=t_start, t_end=t_end, segment_probs=np.stack([s.probs for s in scored]),  # [N, K]
            detected=[s.own for s in scored], silent=sum(r.silent for r in records), labels=ctx.backend.contract.labels,
            live=live, segments=[
                segment_result(r.j, r.seq, r.time, r.time, s.box, s.own, s.probs, ctx.backend.contract.labels)
                for r, s in zip(records, scored)
            ],
        ))
    _add(ctx.timings, "consensus", time.perf_counter() - start)
    return events


def _score_missing(records: list[SegmentRecord], people: list[int | None], store: SegmentStore, last: int, ctx: WindowContext) -> None:
    """Crop and score, in one backend call, each (segment, person) of the window that no earlier window scored."""
    start = time.perf_counter()
    todo: list[tuple[SegmentRecord, int | None, Box | None, bool]] = []
    for person in people:
        for r in records:
            if person in r.scored:
                continue
            if person is None:
                todo.append((r, None, None, False))
            else:
                crop = store.tracks.crop(person, r.j, store.n - 1, newest=last)
                todo.append((r, person, crop.box, crop.own))
    if not todo:
        return
    params = ctx.backend.contract.preprocess.face
    crops = np.stack([crop_face(r.frame, box, params) for r, _, box, _ in todo])  # [M, S, S, 3] uint8
    faces = normalise_faces(crops, params)  # [M, 3, S, S] float32
    specs = np.stack([r.spectrogram for r, _, _, _ in todo])  # [M, 1, F, T]
    tick = time.perf_counter()
    probs = ctx.backend.infer(faces, specs)  # [M, K]
    _add(ctx.timings, "faces", tick - start)
    _add(ctx.timings, "inference", time.perf_counter() - tick)
    ctx.backend_rows += len(todo)
    for (r, person, box, own), p in zip(todo, probs):
        r.scored[person] = Scored(p, box, own)


def _add(timings: dict[str, float], stage: str, seconds: float) -> None:
    timings[stage] = timings.get(stage, 0.0) + seconds
