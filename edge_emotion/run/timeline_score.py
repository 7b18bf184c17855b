"""Score a folder as timelines (`score --window W --hop H`): one row per (file, person, window), each segment scored once.

    recording parts (run/recording.py, in workers) --score_clips: segments of many parts, one backend call
    per batch--> [C, K] per part --per file, in time order--> [S, K] segment probabilities
    --window sums (run/timeline.py)--> window rows (run/window_rows.py) --files in scan order--> WindowResultsFile

A file's rows are written once its last part is scored, ROW_GROUP windows per write, files in the
order of the sorted file list, so a killed and resumed run writes the rows an uninterrupted run
writes. For each file in flight the parent holds only its segments' probabilities, boxes and flags
(about 1 MB for an hour at 0.25 s per segment), never frames or rows.

One person per file for now: each part's largest face (segments.extract); people tracked across a
whole recording need the tracker's state carried from part to part.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_emotion.backends import open_backend
from edge_emotion.config import PreprocessConfig
from edge_emotion.run.recording import RecordingPart, TimelineJob, open_recordings
from edge_emotion.run.rows import FileKey, Row
from edge_emotion.run.score import (
    NoProgress,
    ScoredClip,
    ScoreOptions,
    ScoreProgress,
    in_order,
    model_identity,
    plan_folder,
    score_clips,
)
from edge_emotion.run.summary import Summary
from edge_emotion.run.timeline import (
    SegmentGrid,
    Timeline,
    default_hop,
    default_window,
    make_grid,
    plan_timeline,
    segments_per_hop,
)
from edge_emotion.run.window_results import WindowResultsFile
from edge_emotion.run.window_rows import ScoredSegments, build_window_rows, window_error_row

ROW_GROUP = 256  # windows per write (one fsync): an hour at hop 0.5 s is 29 writes


def resolve_grid(config: PreprocessConfig, window: float | None, hop: float | None) -> tuple[float, float]:
    """(window, hop) in seconds: defaults as `stream` (0.25 s per segment, hop ~0.5 s); GridError for a bad hop."""
    window = default_window(config) if window is None else window
    hop = default_hop(window / config.n_segments) if hop is None else hop
    segments_per_hop(config.n_segments, window, hop)
    return window, hop


@dataclass
class FileTimeline:
    """One file's scored segments, or why there are none."""

    index: int  # the file's place in the work list
    timeline: Timeline | None = None
    scored: ScoredSegments | None = None
    error: str | None = None
    duration: float = 0.0


class _Assembly:
    """A file's segment results, filled part by part."""

    def __init__(self, index: int, timeline: Timeline, classes: int) -> None:
        count = len(timeline.segments)
        self.index, self.timeline = index, timeline
        self.scored = ScoredSegments(0, np.zeros((count, classes), np.float32), [None] * count, np.zeros(count, bool), np.zeros(count, bool))
        self.filled = 0

    def add(self, part: RecordingPart, probs: np.ndarray) -> None:
        assert part.people and part.silent_flags is not None
        span = slice(part.first, part.first + len(probs))
        self.scored.probs[span] = probs  # [C, K]
        self.scored.boxes[span] = part.people[0].boxes
        self.scored.detected[span] = part.people[0].detected
        self.scored.silent[span] = part.silent_flags
        self.filled += len(probs)

    def result(self, duration: float) -> FileTimeline:
        if self.filled != len(self.timeline.segments):  # parts are handed out in order and each once: a bug
            return FileTimeline(self.index, error=f"internal: {self.filled} of {len(self.timeline.segments)} segments scored")
        return FileTimeline(self.index, self.timeline, self.scored, duration=duration)


def assemble(
    scored: Iterable[ScoredClip], grid_for: Callable[[float], SegmentGrid], stages: dict[str, float]
) -> Iterator[tuple[int, FileTimeline]]:
    """Scored parts, files interleaved -> (index, FileTimeline) per file, as each file completes.

    A part without inputs ends its file with an error (a worker that died mid-file too); parts of that file
    still on their way through the backend are then ignored. Stage seconds of every part go into `stages`.
    """
    building: dict[int, _Assembly] = {}
    finished: set[int] = set()
    for item in scored:
        part = item.clip
        for stage, seconds in {**part.stage_seconds(), "inference": item.infer_s}.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
        if part.index in finished:
            continue
        if not part.people or item.probs is None or not isinstance(part, RecordingPart):
            finished.add(part.index)
            building.pop(part.index, None)
            yield part.index, FileTimeline(part.index, error=part.error or "no model inputs")
            continue
        if part.index not in building:
            building[part.index] = _Assembly(part.index, plan_timeline(grid_for(part.fps), part.frame_count), item.probs.shape[-1])
        building[part.index].add(part, item.probs[0])  # [C, K]: the part's one person
        if part.last:
            finished.add(part.index)
            yield part.index, building.pop(part.index).result(part.duration or 0.0)


def write_file(results: WindowResultsFile, key: FileKey, file: FileTimeline, labels: Sequence[str]) -> Row:
    """Write one file's rows (an error row, or its windows in groups); return its first row (for progress)."""
    if file.timeline is None or file.scored is None:
        row = window_error_row(key, file.error or "no model inputs")
        results.write_rows([row])
        return row
    windows = file.timeline.windows
    first: Row | None = None
    for start in range(0, len(windows), ROW_GROUP):
        rows = build_window_rows(key, file.timeline, file.scored, labels, windows[start : start + ROW_GROUP])
        results.write_rows(rows)
        first = first or rows[0]
    assert first is not None  # every timeline has a window
    return first


def score_timelines(
    root: str | Path,
    artifact: str | Path,
    output: str | Path,
    options: ScoreOptions = ScoreOptions(),
    progress: ScoreProgress | None = None,
) -> Summary:
    """Score every video under `root` into window rows in `output`, skipping files already complete there."""
    progress = progress or NoProgress()
    started = time.perf_counter()
    keys = plan_folder(root, options)
    with open_backend(artifact, options.backend, options.device) as backend:
        config, labels = backend.contract.preprocess, backend.contract.labels
        window, hop = resolve_grid(config, options.window, options.hop)
        model = {**model_identity(artifact, backend), "window_s": f"{window:g}", "hop_s": f"{hop:g}"}
        with WindowResultsFile(output, labels, model) as results:
            todo = results.pending(keys)
            summary = Summary(skipped=len(keys) - len(todo))
            progress.start(len(todo), summary.skipped)
            if todo:
                job = TimelineJob(config, window, hop, options.face_device, options.detector)
                with open_recordings(job, options.workers, options.timeout) as loader:
                    scored = score_clips(loader.run([Path(k.path) for k in todo]), backend, options.batch_size)
                    files = assemble(scored, lambda fps: make_grid(config.n_segments, window, hop, fps), summary.stages)
                    for file in in_order(files):
                        progress.advance(write_file(results, todo[file.index], file, labels))
                        summary.scored += 1
                        summary.media_seconds += file.duration
            summary.rows, summary.labels, summary.statuses, summary.failures = results.counts()
    summary.seconds = time.perf_counter() - started
    return summary
