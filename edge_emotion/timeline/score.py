"""Score a folder as timelines (`score --window W --hop H`): one row per (file, person, window), each segment scored once.

    tasks: files, long ones cut into chunks (timeline/chunks.py) --workers (timeline/recording.py)-->
    pieces: one person's crops on some segments --score_clips: segments of many pieces, one backend
    call per batch--> [M, K] per piece --per file, once all its chunks are in: people matched across
    chunks, each window's people (timeline/people.py)--> window rows, window after window
    --files in scan order--> ResultsFile (WINDOWS)

A file's rows are written once its last piece is scored, ROW_GROUP windows per write, window after
window, files in the order of the sorted file list, so a killed and resumed run writes the rows an
uninterrupted run writes. For each file in flight the parent holds only its segments' probabilities,
boxes and flags per person (about 1 MB an hour per person at 0.25 s per segment), never frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_emotion.io.probe import VideoFacts
from edge_emotion.preprocess.faces import Box
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.run.result import FileKey, Result, error_result
from edge_emotion.run.results_file import WINDOWS, ResultsFile
from edge_emotion.run.score import (
    NoProgress,
    ScoredClip,
    ScoreOptions,
    ScoreProgress,
    in_order,
    model_identity,
    open_scoring_backend,
    plan_folder,
    score_clips,
)
from edge_emotion.run.summary import Summary
from edge_emotion.run.threads import one_blas_thread
from edge_emotion.timeline.chunks import Chunk, Chunking, recording_tasks, stitch
from edge_emotion.timeline.grid import SegmentGrid, Timeline, make_grid, plan_timeline
from edge_emotion.timeline.people import Sightings, WindowPerson, main_people
from edge_emotion.timeline.recording import RecordingPart, TimelineJob, open_recordings
from edge_emotion.timeline.rows import build_window_rows
from edge_emotion.timeline.window_options import resolve_windowing

ROW_GROUP = 256  # windows per write (one fsync): an hour at hop 0.5 s is 29 writes


@dataclass
class _ChunkScores:
    """One chunk's scored segments: per person of its tracker (None: centre crops), position -> (probs, box, own)."""

    chunk: Chunk
    people: dict[int | None, dict[int, tuple[np.ndarray, Box | None, bool]]] = field(default_factory=dict)
    silent: dict[int, bool] = field(default_factory=dict)
    sightings: Sightings | None = None  # with its last piece

    def add(self, part: RecordingPart, probs: np.ndarray) -> None:
        inputs = part.people[0]
        assert part.positions is not None and part.silent_flags is not None
        scored = self.people.setdefault(part.person, {})
        for k, p in enumerate(part.positions.tolist()):
            scored[p] = (probs[k], inputs.boxes[k], inputs.detected[k])
            self.silent[p] = bool(part.silent_flags[k])
        if part.last:
            self.sightings = part.sightings

    def window(self, positions: range, person: int | None, global_id: int | None) -> WindowPerson:
        scored = [self.people[person][p] for p in positions]
        return WindowPerson(global_id, np.stack([s[0] for s in scored]), [s[1] for s in scored], np.array([s[2] for s in scored]))


@dataclass
class FileTimeline:
    """One file's scores, chunk by chunk, or why there are none."""

    index: int  # the file's place in the work list
    timeline: Timeline | None = None
    chunks: list[_ChunkScores] = field(default_factory=list)
    error: str | None = None
    duration: float = 0.0
    problems: tuple[str, ...] = ()  # what the file lacks (no audio stream, cut short): its rows are degraded and say so


class _Assembly:
    """A file's pieces, filled chunk by chunk (pieces of one chunk arrive in order, its last one last)."""

    def __init__(self, index: int, count: int) -> None:
        self.index = index
        self.chunks: list[_ChunkScores | None] = [None] * count
        self.facts: VideoFacts | None = None  # the recording's frame times, on each chunk's last piece
        self.done = 0

    def add(self, part: RecordingPart, probs: np.ndarray) -> bool:
        """Add a scored piece; True once every chunk is in."""
        assert part.chunk is not None
        chunk = self.chunks[part.chunk.number] = self.chunks[part.chunk.number] or _ChunkScores(part.chunk)
        chunk.add(part, probs)
        self.facts = part.facts or self.facts
        self.done += part.last
        return self.done == len(self.chunks)

    def result(self, grid_for: Callable[[float], SegmentGrid]) -> FileTimeline:
        """The file's timeline, planned as its workers planned it (from the frame times they read)."""
        assert self.facts is not None  # every chunk's last piece carries them
        chunks = [c for c in self.chunks if c is not None]
        timeline = plan_timeline(grid_for(self.facts.fps), self.facts.times)
        return FileTimeline(self.index, timeline, chunks, duration=self.facts.times.duration, problems=self.facts.problems)


def assemble(
    scored: Iterable[ScoredClip], grid_for: Callable[[float], SegmentGrid], stages: dict[str, float]
) -> Iterator[tuple[int, FileTimeline]]:
    """Scored pieces, files and chunks interleaved -> (index, FileTimeline) per file, as each file completes.

    A piece without inputs ends its file with an error (a worker that died mid-chunk too); pieces of that
    file still on their way are then ignored. Stage seconds of every piece go into `stages`.
    """
    building: dict[int, _Assembly] = {}
    finished: set[int] = set()
    for item in scored:
        part = item.clip
        for stage, seconds in {**part.stage_seconds(), "inference": item.infer_s}.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
        if part.index in finished:
            continue
        if not part.people or item.probs is None or not isinstance(part, RecordingPart) or part.chunk is None:
            finished.add(part.index)
            building.pop(part.index, None)
            yield part.index, FileTimeline(part.index, error=part.error or "no model inputs")
            continue
        if part.index not in building:
            building[part.index] = _Assembly(part.index, part.chunk.count)
        if building[part.index].add(part, item.probs[0]):  # [M, K]: the piece's one person
            finished.add(part.index)
            yield part.index, building.pop(part.index).result(grid_for)


def window_people(file: FileTimeline) -> Iterator[tuple[int, list[WindowPerson], np.ndarray, int]]:
    """(window, everyone in it by person id (or its centre-crop row), silent [N], people seen) per window, in order.

    A window's rows come from the one chunk that reports it, its people from that chunk's tracker; person ids
    are the whole recording's (timeline_chunks.stitch).
    """
    assert file.timeline is not None
    timeline, n = file.timeline, file.timeline.n
    sightings = [c.sightings or Sightings() for c in file.chunks]
    ids = stitch(sightings)
    for c, chunk in enumerate(file.chunks):
        for k in range(*chunk.chunk.windows):
            positions = range(timeline.windows[k].first, timeline.windows[k].first + n)
            seen = sightings[c].people_in(positions)
            people = [chunk.window(positions, p, ids[c][p]) for p in seen] or [chunk.window(positions, None, None)]
            people.sort(key=lambda w: w.person or 0)
            yield k, people, np.array([chunk.silent[p] for p in positions]), len(seen)


def file_rows(key: FileKey, file: FileTimeline, labels: Sequence[str], faces: WhichFaces) -> Iterator[list[Result]]:
    """A file's rows, ROW_GROUP windows at a time: everyone in each window, or its main person (--faces)."""
    if file.timeline is None:
        yield [error_result("window", key, file.error or "no model inputs")]
        return
    timeline = file.timeline
    windows = list(window_people(file))
    chosen = main_people(people for _, people, _, _ in windows) if faces == "largest" else None
    rows: list[Result] = []
    for w, (k, people, silent, seen) in enumerate(windows):
        rows += build_window_rows(key, timeline, timeline.windows[k], [chosen[w]] if chosen else people, silent, seen, labels,
                                  file.duration, file.problems)
        if (w + 1) % ROW_GROUP == 0:
            yield rows
            rows = []
    if rows:
        yield rows


def write_file(results: ResultsFile, key: FileKey, file: FileTimeline, labels: Sequence[str], faces: WhichFaces) -> Result:
    """Write one file's rows (an error row, or its windows in groups); return its first row (for progress)."""
    first: Result | None = None
    for rows in file_rows(key, file, labels, faces):
        results.write_rows(rows)
        first = first or rows[0]
    assert first is not None  # every timeline has a window, every window a row
    return first


def score_timelines(
    root: str | Path,
    artifact: str | Path,
    output: str | Path,
    options: ScoreOptions = ScoreOptions(),
    progress: ScoreProgress | None = None,
    chunking: Chunking = Chunking(),
) -> Summary:
    """Score every video under `root` into window rows in `output`, skipping files already complete there.

    With two workers or more a long recording is cut into chunks (`chunking`) that the workers share."""
    progress = progress or NoProgress()
    started = time.perf_counter()
    keys = plan_folder(root, options)
    with open_scoring_backend(artifact, options) as backend, one_blas_thread():
        config, labels = backend.contract.preprocess, backend.contract.labels
        windowing = resolve_windowing(config, options.window, options.hop)
        window, hop = windowing.window, windowing.hop
        model = {**model_identity(artifact, backend), "window_s": f"{window:g}", "hop_s": f"{hop:g}"}
        with ResultsFile(output, labels, model, options.faces, WINDOWS) as results:
            todo = results.pending(keys)
            summary = Summary(skipped=len(keys) - len(todo))
            progress.start(len(todo), summary.skipped)
            if todo:
                job = TimelineJob(config, window, hop, options.face_setup)

                def grid_for(fps: float) -> SegmentGrid:
                    return make_grid(config.n_segments, window, hop, fps)

                tasks = recording_tasks([Path(k.path) for k in todo], grid_for, chunking, options.workers, config)
                with open_recordings(job, options.workers, options.timeout) as loader:
                    scored = score_clips(loader.run(tasks), backend, options.batch_size)
                    for file in in_order(assemble(scored, grid_for, summary.stages)):
                        progress.advance(write_file(results, todo[file.index], file, labels, options.faces))
                        summary.scored += 1
                        summary.media_seconds += file.duration
            summary.rows, summary.labels, summary.statuses, summary.failures = results.counts()
    summary.seconds = time.perf_counter() - started
    return summary
