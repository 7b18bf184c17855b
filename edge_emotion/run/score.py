"""Score a folder of videos (or one clip) with any backend: batched inference across clips, resumable rows.

    clip inputs (workers) --SegmentBatcher: segments of many clips, one backend call per batch-->
    [N, K] per clip --consensus--> row --in scan order--> ResultsFile (CSV / JSONL)

Rows are written in the order of the sorted file list, whatever order the
workers finish in, so a run that was killed and resumed writes exactly the
file an uninterrupted run writes.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from edge_emotion import defaults
from edge_emotion.backends import open_backend
from edge_emotion.backends.base import Backend
from edge_emotion.io.scan import DEFAULT_EXTENSIONS, Shard, find_videos, select_shard
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.run.clip_inputs import ClipInputs, load_clip_inputs, open_loader
from edge_emotion.run.pool import DEFAULT_TIMEOUT_S
from edge_emotion.run.results_file import ResultsFile
from edge_emotion.run.rows import FileKey, Row, build_row, file_key
from edge_emotion.run.summary import Summary, count_rows

DEFAULT_BATCH_SIZE = defaults.BATCH_SIZE
T = TypeVar("T")


@dataclass(frozen=True)
class ScoreOptions:
    """How to score a folder; the model's own preprocessing comes from the artifact's contract."""

    backend: str | None = None  # None: by the artifact's kind
    device: str = "auto"  # the backend's device
    batch_size: int = DEFAULT_BATCH_SIZE  # segments per backend call
    workers: int = 1  # preprocessing processes; 0 = in this process, without a timeout
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    shard: Shard = field(default_factory=Shard)
    timeout: float = DEFAULT_TIMEOUT_S  # seconds per file, in a worker
    face_device: str = "cpu"  # MTCNN's device
    window: float | None = None  # seconds per window row (run/timeline_score.py); None with hop None: one row per clip
    hop: float | None = None  # seconds between windows; a multiple of window / N


class ScoreProgress(Protocol):
    """What a progress display hears from `score_folder`."""

    def start(self, total: int, skipped: int) -> None: ...

    def advance(self, row: Row) -> None: ...


class BackendFacts(Protocol):
    """What a results file records of a backend (a Backend, or its description from a remote actor)."""

    name: str

    @property
    def precision(self) -> str: ...


class NoProgress:
    """The progress display of a run nobody watches."""

    def start(self, total: int, skipped: int) -> None:
        pass

    def advance(self, row: Row) -> None:
        pass


@dataclass
class ScoredClip:
    """A clip's inputs and its backend output."""

    clip: ClipInputs
    probs: np.ndarray | None  # [N, K]; None for a clip that failed before inference
    infer_s: float = 0.0  # its share of the backend calls' time


@dataclass
class _Pending:
    clip: ClipInputs
    sent: int = 0  # segments already inferred
    chunks: list[np.ndarray] = field(default_factory=list)  # [n_i, K] each
    infer_s: float = 0.0

    @property
    def n(self) -> int:
        return len(self.clip.inputs.segments)


class SegmentBatcher:
    """Queue the segments of many clips and run the backend on exactly `batch_size` of them at a time.

    A clip may be split across two calls; it completes when its last segment
    has been inferred. Exact batch sizes suit engines built for fixed shapes.
    """

    def __init__(self, backend: Backend, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.backend = backend
        self.batch_size = batch_size
        self._pending: deque[_Pending] = deque()
        self._queued = 0  # segments waiting for the backend

    def add(self, clip: ClipInputs) -> list[ScoredClip]:
        """Queue a clip with inputs; return the clips that completed (maybe none)."""
        item = _Pending(clip)
        self._pending.append(item)
        self._queued += item.n
        done: list[ScoredClip] = []
        while self._queued >= self.batch_size:
            done += self._run(self.batch_size)
        return done

    def flush(self) -> list[ScoredClip]:
        """Run what is left, in batches of at most `batch_size`."""
        done: list[ScoredClip] = []
        while self._queued:
            done += self._run(min(self._queued, self.batch_size))
        return done

    def _run(self, count: int) -> list[ScoredClip]:
        faces, specs, parts = [], [], []
        remaining = count
        for item in self._pending:
            if remaining == 0:
                break
            take = min(item.n - item.sent, remaining)
            if take == 0:
                continue
            inputs = item.clip.inputs
            faces.append(inputs.faces[item.sent : item.sent + take])
            specs.append(inputs.spectrograms[item.sent : item.sent + take])
            parts.append((item, take))
            item.sent += take
            remaining -= take
        start = time.perf_counter()
        probs = self.backend.infer(np.concatenate(faces), np.concatenate(specs))  # [count, K]
        elapsed = time.perf_counter() - start
        offset = 0
        for item, take in parts:
            item.chunks.append(probs[offset : offset + take])
            item.infer_s += elapsed * take / count
            offset += take
        self._queued -= count
        done: list[ScoredClip] = []
        while self._pending and self._pending[0].sent == self._pending[0].n:
            item = self._pending.popleft()
            done.append(ScoredClip(item.clip, np.concatenate(item.chunks), item.infer_s))
        return done


def score_clips(clips: Iterable[ClipInputs], backend: Backend, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[ScoredClip]:
    """Run the backend over a stream of clip inputs, batching segments across clips."""
    batcher = SegmentBatcher(backend, batch_size)
    for clip in clips:
        if clip.inputs is None:
            yield ScoredClip(clip, None)
        else:
            yield from batcher.add(clip)
    yield from batcher.flush()


def in_order(items: Iterable[tuple[int, T]]) -> Iterator[T]:
    """Re-order (index, row) pairs that arrive in any order into index order 0, 1, 2, ...

    Only finished rows wait here (small), never model inputs.
    """
    waiting: dict[int, T] = {}
    next_index = 0
    for index, row in items:
        waiting[index] = row
        while next_index in waiting:
            yield waiting.pop(next_index)
            next_index += 1
    if waiting:
        raise RuntimeError(f"rows {sorted(waiting)} were never preceded by row {next_index}")


def plan_folder(root: str | Path, options: ScoreOptions) -> list[FileKey]:
    """The shard's videos, sorted, with their (path, size, mtime) keys."""
    paths = select_shard(find_videos(root, options.extensions), root, options.shard)
    return [file_key(p) for p in paths]


def model_identity(artifact: str | Path, backend: BackendFacts) -> dict[str, str]:
    """What a results file records of the model behind its rows: the artifact's bytes, backend and precision."""
    digest = hashlib.sha256()
    with open(artifact, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"artifact": str(Path(artifact).resolve()), "sha256": digest.hexdigest(), "backend": backend.name, "precision": backend.precision}


def score_folder(
    root: str | Path,
    artifact: str | Path,
    output: str | Path,
    options: ScoreOptions = ScoreOptions(),
    progress: ScoreProgress | None = None,
) -> Summary:
    """Score every video under `root` into `output`, skipping clips already there (same path, size, mtime)."""
    progress = progress or NoProgress()
    started = time.perf_counter()
    keys = plan_folder(root, options)
    with open_backend(artifact, options.backend, options.device) as backend, ResultsFile(
        output, backend.contract.labels, model_identity(artifact, backend)
    ) as results:
        todo = results.pending(keys)
        summary = Summary(skipped=len(keys) - len(todo))
        progress.start(len(todo), summary.skipped)
        if todo:
            with open_loader(backend.contract.preprocess, options.workers, options.timeout, options.face_device) as loader:
                scored = score_clips(loader.run([Path(k.path) for k in todo]), backend, options.batch_size)
                rows = in_order(clip_rows(scored, todo, backend.contract.labels, summary))
                for row in rows:
                    results.write(row)
                    progress.advance(row)
        summary.rows = len(results.rows)
        summary.labels, summary.statuses, summary.failures = count_rows(results.rows.values())
    summary.seconds = time.perf_counter() - started
    return summary


def clip_rows(scored: Iterable[ScoredClip], keys: Sequence[FileKey], labels: Sequence[str], summary: Summary) -> Iterator[tuple[int, Row]]:
    """Build each clip's row (consensus) and add its times to the summary."""
    for item in scored:
        start = time.perf_counter()
        row = build_row(item.clip, item.probs, labels, keys[item.clip.index])
        stages = {**item.clip.stage_seconds(), "inference": item.infer_s, "consensus": time.perf_counter() - start}
        for stage, seconds in stages.items():
            summary.stages[stage] = summary.stages.get(stage, 0.0) + seconds
        summary.scored += 1
        summary.media_seconds += item.clip.duration or 0.0
        yield item.clip.index, row


def predict_clip(video: str | Path, backend: Backend, detector: FaceDetector | None = None) -> Row:
    """One clip through the same path as `score` (load_clip_inputs, backend, build_row): the same numbers."""
    config = backend.contract.preprocess
    detector = detector or FaceDetector(config.face)
    key = file_key(Path(video).absolute())
    clip = load_clip_inputs(key.path, config, detector)
    scored = next(score_clips([clip], backend, batch_size=max(1, config.n_segments)))
    return build_row(scored.clip, scored.probs, backend.contract.labels, key)
