"""Scored pieces -> each file's results: one assembly per file, one row builder for clip rows and window rows.

    scored pieces (files, chunks and parts interleaved) --assemble, per file once its chunks are in-->
    FileScores: per chunk and person, [S, K] segment probabilities, boxes, detected; silent per segment
    --file_rows: per window everyone in it (people matched across chunks, timeline/chunks.stitch), or its
    main person (--faces largest, tracks.MainPerson)--> run/result.py window_result, ROW_GROUP windows a write

A clip is a file whose timeline is one window over the whole file: its row is that window's row, kind "clip".
Who is in a window is its chunk's tracks (`people`: everyone seen there); the rows are of the people the
reader scored there (a clip with --faces largest: its main person), one of centre crops (person null) where
nobody was seen. For each file in flight the parent holds only these arrays (about 1 MB an hour per person at
0.25 s per segment), never frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from edge_emotion.io.probe import VideoFacts
from edge_emotion.preprocess.faces import Box
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.preprocess.tracks import TrackStore
from edge_emotion.run.pieces import Piece, ScoredPiece
from edge_emotion.run.result import FileKey, Kind, Result, SegmentResult, error_result, segment_result, window_result
from edge_emotion.timeline.chunks import Chunk, stitch
from edge_emotion.timeline.grid import Timeline
from edge_emotion.timeline.people import WindowPerson, main_people

ROW_GROUP = 256  # windows per write (one fsync): an hour at hop 0.5 s is 29 writes


@dataclass
class PersonScores:
    """One person's scored segments over a chunk's scored positions."""

    probs: np.ndarray  # [S, K] backend output (NaN where this person was not scored)
    boxes: list[Box | None]  # [S] the box each crop used
    detected: np.ndarray  # [S] bool: the person's own face

    def window(self, person: int | None, at: slice) -> WindowPerson:
        return WindowPerson(person, self.probs[at], self.boxes[at], self.detected[at])


@dataclass
class ChunkScores:
    """One chunk's scored segments, person by person (None: centre crops), and what its tracker saw."""

    chunk: Chunk
    silent: np.ndarray  # [S] bool per scored position
    people: dict[int | None, PersonScores] = field(default_factory=dict)
    tracks: TrackStore | None = None  # with its last piece

    def add(self, piece: Piece, probs: Sequence[np.ndarray]) -> None:
        """A scored piece: probs[i] [M_i, K] for piece.people[i]."""
        at = piece.positions - self.chunk.score[0]  # [C] into the chunk
        self.silent[at] = piece.silent
        for crops, p in zip(piece.people, probs):
            if crops.person not in self.people:
                s = len(self.silent)
                self.people[crops.person] = PersonScores(np.full((s, p.shape[1]), np.nan, p.dtype), [None] * s, np.zeros(s, bool))
            scores, rows = self.people[crops.person], at[crops.rows]
            scores.probs[rows], scores.detected[rows] = p, crops.detected
            for row, box in zip(rows.tolist(), crops.boxes):
                scores.boxes[row] = box
        if piece.last:
            self.tracks = piece.tracks


@dataclass
class FileScores:
    """One file's scores, chunk by chunk, or why there are none."""

    index: int  # the file's place in the work list
    timeline: Timeline | None = None
    chunks: list[ChunkScores] = field(default_factory=list)
    error: str | None = None
    duration: float | None = None  # seconds of video read (None: the file did not decode)
    problems: tuple[str, ...] = ()  # what the file lacks (no audio stream, cut short): its rows are degraded and say so


class _Assembly:
    """A file's pieces, chunk by chunk (pieces of one chunk arrive in order, its last one last)."""

    def __init__(self, index: int, count: int) -> None:
        self.index = index
        self.chunks: list[ChunkScores | None] = [None] * count
        self.facts: VideoFacts | None = None  # the recording's frame times, on each chunk's last piece
        self.done = 0

    def add(self, piece: Piece, probs: Sequence[np.ndarray]) -> bool:
        """Add a scored piece; True once every chunk is in."""
        assert piece.chunk is not None
        c = piece.chunk
        chunk = self.chunks[c.number] = self.chunks[c.number] or ChunkScores(c, np.zeros(c.score[1] - c.score[0], bool))
        chunk.add(piece, probs)
        self.facts = piece.facts or self.facts
        self.done += piece.last
        return self.done == len(self.chunks)

    def result(self, plan: Callable[[VideoFacts], Timeline]) -> FileScores:
        """The file's scores on its timeline, planned as its readers planned it (from the frame times they read)."""
        assert self.facts is not None  # every chunk's last piece carries them
        chunks = [c for c in self.chunks if c is not None]
        return FileScores(self.index, plan(self.facts), chunks, duration=self.facts.times.duration, problems=self.facts.problems)


def assemble(scored: Iterable[ScoredPiece], plan: Callable[[VideoFacts], Timeline], stages: dict[str, float]) -> Iterator[FileScores]:
    """Scored pieces, files and chunks interleaved -> FileScores per file, as each completes. An error piece ends its file (a worker that died mid-chunk too); pieces of that file still on their
    way are then ignored. Stage seconds of every piece go into `stages`."""
    building: dict[int, _Assembly] = {}
    finished: set[int] = set()
    for item in scored:
        piece, probs = item.piece, item.probs
        for stage, seconds in {**piece.stage_seconds(), "inference": item.infer_s}.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
        if piece.index in finished:
            continue
        if piece.chunk is None or probs is None:
            finished.add(piece.index)
            building.pop(piece.index, None)
            duration = None if piece.facts is None else piece.facts.times.duration
            yield FileScores(piece.index, error=piece.error or "no model inputs", duration=duration)
            continue
        if piece.index not in building:
            building[piece.index] = _Assembly(piece.index, piece.chunk.count)
        if building[piece.index].add(piece, probs):
            finished.add(piece.index)
            yield building.pop(piece.index).result(plan)


def window_people(file: FileScores) -> Iterator[tuple[int, list[WindowPerson], int, int]]:
    """(window, everyone scored in it by person id (or its centre-crop row), silent segments, people seen) per window.

    A window's rows come from the one chunk that reports it, its people from that chunk's tracks; person ids are
    the whole recording's (chunks.stitch).
    """
    assert file.timeline is not None
    timeline, n = file.timeline, file.timeline.n
    tracks = [c.tracks or TrackStore() for c in file.chunks]
    ids = stitch(tracks)
    for c, chunk in enumerate(file.chunks):
        for k in range(*chunk.chunk.windows):
            first = timeline.windows[k].first
            at = slice(first - chunk.chunk.score[0], first - chunk.chunk.score[0] + n)
            seen = tracks[c].people_in(range(first, first + n))
            people = [chunk.people[p].window(ids[c][p], at) for p in seen if p in chunk.people] or [chunk.people[None].window(None, at)]
            people.sort(key=lambda who: who.person or 0)
            yield k, people, int(np.count_nonzero(chunk.silent[at])), len(seen)


def file_rows(key: FileKey, file: FileScores, labels: Sequence[str], faces: WhichFaces, kind: Kind) -> Iterator[list[Result]]:
    """A file's rows, ROW_GROUP windows at a time: everyone in each window, or its main person (--faces largest)."""
    if file.timeline is None:
        yield [error_result(kind, key, file.error or "", file.duration)]
        return
    timeline = file.timeline
    windows = list(window_people(file))
    chosen = main_people(people for _, people, _, _ in windows) if faces == "largest" else None
    rows: list[Result] = []
    for w, (k, people, silent, seen) in enumerate(windows):
        span, positions = timeline.windows[k], range(timeline.windows[k].first, timeline.windows[k].first + timeline.n)
        rows += [
            window_result(
                kind, key, key.path, person=who.person, people=seen, window=span.index, n_windows=len(timeline.windows),
                t_start=span.t_start, t_end=span.t_end, segment_probs=who.probs, detected=who.detected, silent=silent,
                labels=labels, duration_s=file.duration, problems=file.problems,
                segments=[_segment(timeline, who, p, j, labels) for j, p in enumerate(positions)],
            )
            for who in ([chosen[w]] if chosen else people)
        ]
        if (w + 1) % ROW_GROUP == 0:
            yield rows
            rows = []
    if rows:
        yield rows


def _segment(timeline: Timeline, who: WindowPerson, p: int, j: int, labels: Sequence[str]) -> SegmentResult:
    seg = timeline.segments[p]
    result = segment_result(timeline.grid_index[p], seg.frame, seg.centre, seg.centre, who.boxes[j], who.detected[j], who.probs[j], labels)
    return result if seg.video else replace(result, video=False)
