"""A stream's epoch: each segment computed once as it arrives, each window's results from its N segments, by the
engine that scores a recording:

    segment j: its frame's faces through the epoch's tracker into its track store, the spectrogram of its audio
      window (timeline/inputs.py, as a recording's pass computes them)
    window k: the crops of (segment, person) that no earlier window scored, as one Piece through the one scorer
      (run/score.py SegmentBatcher, one backend call) --run/result.py window_result--> a Result per person

People follow `score --window`'s rules through the epoch's track store (preprocess/tracks.py): everyone seen on one
of the window's segments (`--faces all`; a window without anyone once, on centre crops, person null) or its main
person (`--faces largest`, tracks.MainPerson); a segment without the person's own face borrows by the one borrowing
rule with the window's last segment as the newest it may borrow from (a file may borrow from a nearer sighting after
that window; a stream cannot wait for one, and a crop once scored is never scored again). With one person in view a
window scores hop / L new crops.

An epoch keeps a segment's RGB frame while a window may still need a crop of it (a person first seen later in the
window borrows a box onto it), from the next window's first segment on, and its track store the boxes from N - 1
segments before (a borrowed box may come from there): N frames or so at any time, whatever the stream's length.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from edge_emotion.backends.base import Backend
from edge_emotion.config import PreprocessConfig
from edge_emotion.io.decode import upright
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.preprocess.tracks import Crop, MainPerson, PersonNumbers, TrackStore
from edge_emotion.run.pieces import Piece
from edge_emotion.run.result import Live, Result, segment_result, window_result
from edge_emotion.run.score import SegmentBatcher
from edge_emotion.stream.scheduler import SegmentWork
from edge_emotion.stream.window import EpochGrid
from edge_emotion.timeline.inputs import audio_inputs, person_crops, track_frame


@dataclass
class SegmentRecord:
    """A computed segment: what its crops and results need."""

    j: int  # the segment's index on its epoch's grid
    frame: np.ndarray  # [H, W, 3] uint8 RGB, upright
    spectrogram: np.ndarray  # [1, F, T] float32
    silent: bool
    arrival: float  # time.monotonic() when the last of its inputs arrived
    time: float  # its frame's stream time (its audio window's centre)
    seq: int  # its frame's number in the run
    scored: dict[int | None, tuple[np.ndarray, Crop]] = field(default_factory=dict)  # person (None: centre crop) -> [K], crop


@dataclass
class Scoring:
    """What every window of a run needs besides its segments, and the run's counts."""

    backend: Backend
    faces: WhichFaces
    wall: Callable[[float], float]  # stream time -> epoch seconds (source.StreamClock.wall)
    source: str  # the results' path: the source's URL or file
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, added up over the run
    backend_rows: int = 0
    last_wall: float = 0.0  # the last event's window end on the wall clock: events never go back


class Epoch:
    """One epoch's tracker, track store (boxes by grid index j), computed segments and main person."""

    def __init__(self, number: int, detector: FaceDetector, numbers: PersonNumbers, config: PreprocessConfig) -> None:
        self.number, self.detector, self.numbers, self.config = number, detector, numbers, config
        self.tracker = detector.tracker()
        self.tracks = TrackStore()
        self.records: dict[int, SegmentRecord] = {}
        self.main = MainPerson()
        numbers.new_epoch()

    def add(self, work: SegmentWork, timings: dict[str, float]) -> None:
        """Segment j's frame as RGB, its faces (the tracker's next frame), its spectrogram; seconds per stage."""
        start = time.perf_counter()
        frame = upright(work.frame)  # [H, W, 3] uint8
        _add(timings, "frames", time.perf_counter() - start)
        track_frame(self.detector, self.tracker, self.tracks, work.j, frame, timings, self.numbers)
        start = time.perf_counter()
        specs, silent = audio_inputs(work.audio[None], self.config.audio)  # [1, 1, F, T], [1]
        _add(timings, "spectrogram", time.perf_counter() - start)
        self.records[work.j] = SegmentRecord(work.j, frame, specs[0], bool(silent[0]), work.arrival, work.time, work.seq)

    def window(self, k: int, grid: EpochGrid, dropped_frames: int, run: Scoring) -> list[Result]:
        """Window k's results, one per person reported (`dropped_frames`: the stream's so far); then the segments
        before the next window's are forgotten."""
        segments = grid.segments(k)
        records = [self.records[j] for j in segments]  # the scheduler hands a window out once its segments are in
        seen: list[int | None] = list(self.tracks.people_in(segments))
        people = (seen or [None]) if run.faces == "all" else [self.main.choose(self.tracks.areas(segments))]
        self._score(records, people, run)
        t_start, t_end = grid.window_times(k)
        run.last_wall = max(run.last_wall, run.wall(t_end))
        latency_ms = round((time.monotonic() - max(r.arrival for r in records)) * 1000, 1)
        wall = datetime.fromtimestamp(run.last_wall, timezone.utc).isoformat(timespec="milliseconds")
        live, labels = Live(self.number, wall, latency_ms, dropped_frames), run.backend.contract.labels
        start = time.perf_counter()
        results = []
        for person in people:
            scored = [r.scored[person] for r in records]
            results.append(window_result(
                "stream", None, run.source, person=person, people=len(seen), window=k, n_windows=None, t_start=t_start,
                t_end=t_end, segment_probs=np.stack([p for p, _ in scored]),  # [N, K]
                detected=[c.own for _, c in scored], silent=sum(r.silent for r in records), labels=labels, live=live,
                segments=[segment_result(r.j, r.seq, r.time, r.time, c.box, c.own, p, labels) for r, (p, c) in zip(records, scored)],
            ))
        _add(run.timings, "consensus", time.perf_counter() - start)
        self._forget_before(grid.segments(k + 1).start)
        return results

    def _score(self, records: list[SegmentRecord], people: list[int | None], run: Scoring) -> None:
        """Each (segment, person) of the window that no earlier window scored, cropped and scored as one piece."""
        start = time.perf_counter()
        newest = records[-1].j
        needed = {person: [self._crop(person, r.j, newest) for r in records if person not in r.scored] for person in people}
        needed = {person: used for person, used in needed.items() if used}
        if not needed:
            return
        positions = np.array(sorted({c.position for used in needed.values() for c in used}))  # [C] grid indices
        face, frame_at = run.backend.contract.preprocess.face, (lambda j: self.records[j].frame)
        piece = Piece(  # no chunk: a live window's inputs, only to be scored
            0, run.source, positions=positions, spectrograms=np.stack([self.records[j].spectrogram for j in positions.tolist()]),
            people=[person_crops(person, used, frame_at, positions, face) for person, used in needed.items()],
        )
        _add(run.timings, "faces", time.perf_counter() - start)
        (scored,) = SegmentBatcher(run.backend, piece.size).add(piece)  # exactly one backend call
        _add(run.timings, "inference", scored.infer_s)
        run.backend_rows += piece.size
        assert scored.probs is not None
        for (person, used), probs in zip(needed.items(), scored.probs):
            for crop, p in zip(used, probs):
                self.records[crop.position].scored[person] = (p, crop)

    def _crop(self, person: int | None, j: int, newest: int) -> Crop:
        """A centre crop for nobody, else the person's box by the borrowing rule, from no segment after `newest`."""
        if person is None:
            return Crop(j, None, False)
        return self.tracks.crop(person, j, self.config.n_segments - 1, newest=newest)

    def _forget_before(self, j: int) -> None:
        """No window will start before segment j: drop the frames before it, and the boxes before j - (N - 1)."""
        for q in [q for q in self.records if q < j]:
            del self.records[q]
        self.tracks.forget_before(j - self.config.n_segments + 1)


def _add(timings: dict[str, float], stage: str, seconds: float) -> None:
    timings[stage] = timings.get(stage, 0.0) + seconds
