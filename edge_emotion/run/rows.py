"""Scored pieces -> each file's results: one assembly per file, one row builder for clip rows and window rows.

    scored pieces (files, chunks and parts interleaved) --assemble, per file once its chunks are in-->
    FileScores: per chunk and person, [S, K] segment probabilities, boxes, detected; silent per segment
    --file_rows, chunk after chunk: per window everyone in it (people matched across chunks, timeline/chunks.People),
    or its main person (--faces largest, tracks.MainPerson)--> run/result.py window_result, ROW_GROUP windows a write

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
from edge_emotion.timeline.chunks import Chunk, People
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
    """One file's scores (of some of its chunks, in order: `assemble` gives one a chunk), or why there are none."""

    index: int  # the file's place in the work list
    timeline: Timeline | None = None
    chunks: list[ChunkScores] = field(default_factory=list)
    error: str | None = None
    duration: float | None = None  # seconds of video read (None: the file did not decode)
    problems: tuple[str, ...] = ()  # what the file lacks (no audio stream, cut short): its rows are degraded and say so

    @property
    def number(self) -> int:
        """Its first chunk's number; -1 for an error."""
        return self.chunks[0].chunk.number if self.timeline is not None else -1

    @property
    def last(self) -> bool:
        """The file ends with these scores: its last chunk, or its error."""
        return self.timeline is None or self.chunks[-1].chunk.number == self.chunks[-1].chunk.count - 1


def assemble(scored: Iterable[ScoredPiece], plan: Callable[[VideoFacts], Timeline], stages: dict[str, float]) -> Iterator[FileScores]:
    """Scored pieces, files and chunks interleaved -> a FileScores per chunk (a clip: its one), as each completes, on
    its file's timeline as its readers planned it (from the frame times on the chunk's last piece). An error piece
    ends its file (a worker that died mid-chunk too); pieces of that file still on their way are then ignored.
    Stage seconds of every piece go into `stages`."""
    building: dict[tuple[int, int], ChunkScores] = {}
    failed: set[int] = set()
    for item in scored:
        piece, probs = item.piece, item.probs
        for stage, seconds in {**piece.stage_seconds(), "inference": item.infer_s}.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
        if piece.index in failed:
            continue
        if piece.chunk is None or probs is None:
            failed.add(piece.index)
            for key in [k for k in building if k[0] == piece.index]:
                del building[key]
            duration = None if piece.facts is None else piece.facts.times.duration
            yield FileScores(piece.index, error=piece.error or "no model inputs", duration=duration)
            continue
        c = piece.chunk
        chunk = building.setdefault((piece.index, c.number), ChunkScores(c, np.zeros(c.score[1] - c.score[0], bool)))
        chunk.add(piece, probs)
        if piece.last:
            del building[(piece.index, c.number)]
            assert piece.facts is not None  # every chunk's last piece carries them
            yield FileScores(piece.index, plan(piece.facts), [chunk], duration=piece.facts.times.duration, problems=piece.facts.problems)


def window_people(timeline: Timeline, chunk: ChunkScores, ids: dict[int, int]) -> Iterator[tuple[int, list[WindowPerson], int, int]]:
    """(window, everyone scored in it by person id (or its centre-crop row), silent segments, people seen) per window
    of the chunk. Its people come from its tracks; `ids`: their numbers over the whole recording (chunks.People).
    """
    n, tracks = timeline.n, chunk.tracks or TrackStore()
    for k in range(*chunk.chunk.windows):
        first = timeline.windows[k].first
        at = slice(first - chunk.chunk.score[0], first - chunk.chunk.score[0] + n)
        seen = tracks.people_in(range(first, first + n))
        people = [chunk.people[p].window(ids[p], at) for p in seen if p in chunk.people] or [chunk.people[None].window(None, at)]
        people.sort(key=lambda who: who.person or 0)
        yield k, people, int(np.count_nonzero(chunk.silent[at])), len(seen)


def file_rows(
    key: FileKey, file: FileScores, labels: Sequence[str], faces: WhichFaces, kind: Kind, people: People | None = None
) -> Iterator[list[Result]]:
    """A file's rows (or its chunks' in `file`), ROW_GROUP windows at a time: everyone in each window, or its main
    person (--faces largest). `people`: who the chunks before these were (a new People for a file's first chunk)."""
    if file.timeline is None:
        yield [error_result(kind, key, file.error or "", file.duration)]
        return
    timeline, people = file.timeline, people or People()
    rows: list[Result] = []
    for chunk in file.chunks:
        ids = people.number(chunk.chunk, chunk.tracks or TrackStore(), timeline)
        for k, everyone, silent, seen in window_people(timeline, chunk, ids):
            span, positions = timeline.windows[k], range(timeline.windows[k].first, timeline.windows[k].first + timeline.n)
            rows += [
                window_result(
                    kind, key, key.path, person=who.person, people=seen, window=span.index, n_windows=len(timeline.windows),
                    t_start=span.t_start, t_end=span.t_end, segment_probs=who.probs, detected=who.detected, silent=silent,
                    labels=labels, duration_s=file.duration, problems=file.problems,
                    segments=[_segment(timeline, who, p, j, labels) for j, p in enumerate(positions)],
                )
                for who in (main_people([everyone], people.main) if faces == "largest" else everyone)
            ]
            if (k + 1) % ROW_GROUP == 0:
                yield rows
                rows = []
    if rows:
        yield rows


def _segment(timeline: Timeline, who: WindowPerson, p: int, j: int, labels: Sequence[str]) -> SegmentResult:
    seg = timeline.segments[p]
    result = segment_result(timeline.grid_index[p], seg.frame, seg.centre, seg.centre, who.boxes[j], who.detected[j], who.probs[j], labels)
    return result if seg.video else replace(result, video=False)
