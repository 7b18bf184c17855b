"""Score a folder of videos (or one clip) with any backend: batched inference across clips, resumable rows.

    clip inputs (workers; uint8 face crops, per person) --SegmentBatcher: segments of many clips and
    people, normalised and run through the backend a batch at a time--> [P, N, K] per clip
    --consensus--> one row per person --in scan order--> ResultsFile (CSV / JSONL)

Rows are written in the order of the sorted file list, whatever order the
workers finish in, so a run that was killed and resumed writes exactly the
file an uninterrupted run writes. Workers and threads follow run/threads.py.
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
from edge_emotion.backends import backend_for, open_backend
from edge_emotion.backends.base import Backend
from edge_emotion.io.scan import DEFAULT_EXTENSIONS, Shard, find_videos, select_shard
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.preprocess.segments import model_faces
from edge_emotion.run.clip_inputs import ClipInputs, FaceSetup, load_clip_inputs, open_loader
from edge_emotion.run.pool import DEFAULT_TIMEOUT_S
from edge_emotion.run.result import FileKey, Result, file_key
from edge_emotion.run.results_file import ResultsFile
from edge_emotion.run.rows import build_rows
from edge_emotion.run.summary import Summary
from edge_emotion.run.threads import backend_threads, one_blas_thread, usable_cores

DEFAULT_BATCH_SIZE = defaults.BATCH_SIZE
T = TypeVar("T")


@dataclass(frozen=True)
class ScoreOptions:
    """How to score a folder; the model's own preprocessing comes from the artifact's contract."""

    backend: str | None = None  # None: by the artifact's kind
    device: str = "auto"  # the backend's device
    batch_size: int = DEFAULT_BATCH_SIZE  # segments per backend call
    workers: int = field(default_factory=usable_cores)  # preprocessing processes (run/threads.py); 0 = in this process, no timeout
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    shard: Shard = field(default_factory=Shard)
    timeout: float = DEFAULT_TIMEOUT_S  # seconds per file, in a worker
    face_device: str = "cpu"  # MTCNN's device
    faces: WhichFaces = "largest"  # whose faces: the largest person's (one row per file), or everyone's (a row each)
    detector: Path | None = None  # a folder of detector nets (FP16 ONNX, TensorRT engines); None: the packaged ONNX
    window: float | None = None  # seconds per window row (timeline/score.py); None with hop None: one row per clip
    hop: float | None = None  # seconds between windows; a multiple of window / N

    @property
    def face_setup(self) -> FaceSetup:
        return FaceSetup(self.faces, self.face_device, self.detector)


class ScoreProgress(Protocol):
    """What a progress display hears from `score_folder`."""

    def start(self, total: int, skipped: int) -> None: ...  # files to score, files already done

    def advance(self, row: Result) -> None: ...  # one file done: its first row (an error row, or its first person's)


class BackendFacts(Protocol):
    """What a results file records of a backend (a Backend, or its description from a remote actor)."""

    name: str

    @property
    def precision(self) -> str: ...


class NoProgress:
    """The progress display of a run nobody watches."""

    def start(self, total: int, skipped: int) -> None:
        pass

    def advance(self, row: Result) -> None:
        pass


@dataclass
class ScoredClip:
    """A clip's inputs and its backend output."""

    clip: ClipInputs
    probs: np.ndarray | None  # [P, N, K], per person of clip.people; None for a clip that failed before inference
    infer_s: float = 0.0  # its share of the backend calls' time (the faces' normalisation for them included)


@dataclass
class _Pending:
    clip: ClipInputs
    sent: int = 0  # segments already inferred, over its people in turn
    chunks: list[np.ndarray] = field(default_factory=list)  # [n_i, K] each
    infer_s: float = 0.0

    @property
    def per_person(self) -> int:
        return len(self.clip.people[0].segments)

    @property
    def n(self) -> int:
        return len(self.clip.people) * self.per_person


class SegmentBatcher:
    """Queue the segments of many clips (all their people's) and run the backend on exactly `batch_size` at a time.

    A clip may be split across two calls; it completes when its last segment
    has been inferred. Exact batch sizes suit engines built for fixed shapes.
    Faces that arrive as uint8 crops are normalised here, one batch at a time,
    so a clip's float32 faces never exist all at once.
    """

    def __init__(self, backend: Backend, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.backend = backend
        self.batch_size = batch_size
        self._pending: deque[_Pending] = deque()
        self._queued = 0  # segments waiting for the backend

    def add(self, clip: ClipInputs) -> list[ScoredClip]:
        """Queue a clip with inputs (at least one person); return the clips that completed (maybe none)."""
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
        start = time.perf_counter()
        faces: list[np.ndarray] = []
        specs: list[np.ndarray] = []
        parts: list[tuple[_Pending, int]] = []
        remaining = count
        for item in self._pending:
            if remaining == 0:
                break
            take = min(item.n - item.sent, remaining)
            if take == 0:
                continue
            parts.append((item, take))
            remaining -= take
            while take:  # the item's next segments, maybe of more than one person
                person, k = divmod(item.sent, item.per_person)
                step = min(item.per_person - k, take)
                inputs = item.clip.people[person]
                faces.append(model_faces(inputs.faces[k : k + step], self.backend.contract.preprocess.face))
                specs.append(inputs.spectrograms[k : k + step])
                item.sent += step
                take -= step
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
            probs = np.concatenate(item.chunks).reshape(len(item.clip.people), item.per_person, -1)  # [P, N, K]
            done.append(ScoredClip(item.clip, probs, item.infer_s))
        return done


def score_clips(clips: Iterable[ClipInputs], backend: Backend, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[ScoredClip]:
    """Run the backend over a stream of clip inputs, batching segments across clips."""
    batcher = SegmentBatcher(backend, batch_size)
    for clip in clips:
        if not clip.people:
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


def open_scoring_backend(artifact: str | Path, options: ScoreOptions) -> Backend:
    """The options' backend; ONNX Runtime on the threads the workers leave (run/threads.py), others as they are."""
    name = options.backend or backend_for(artifact)
    threads = {"threads": backend_threads(options.workers)} if name == "onnxruntime" else {}
    return open_backend(artifact, options.backend, options.device, **threads)


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
    """Score every video under `root` into `output`, skipping files already complete there (same path, size, mtime)."""
    progress = progress or NoProgress()
    started = time.perf_counter()
    keys = plan_folder(root, options)
    with open_scoring_backend(artifact, options) as backend, ResultsFile(
        output, backend.contract.labels, model_identity(artifact, backend), options.faces
    ) as results, one_blas_thread():
        todo = results.pending(keys)
        summary = Summary(skipped=len(keys) - len(todo))
        progress.start(len(todo), summary.skipped)
        if todo:
            with open_loader(backend.contract.preprocess, options.workers, options.timeout, options.face_setup) as loader:
                scored = score_clips(loader.run([Path(k.path) for k in todo]), backend, options.batch_size)
                for rows in in_order(clip_rows(scored, todo, backend.contract.labels, summary)):
                    results.write_rows(rows)
                    progress.advance(rows[0])  # per file: its rows are one error row or one per person
        summary.rows, summary.labels, summary.statuses, summary.failures = results.counts()
    summary.seconds = time.perf_counter() - started
    return summary


def clip_rows(
    scored: Iterable[ScoredClip], keys: Sequence[FileKey], labels: Sequence[str], summary: Summary
) -> Iterator[tuple[int, list[Result]]]:
    """Build each clip's rows, one per person (consensus), and add its times to the summary."""
    for item in scored:
        start = time.perf_counter()
        rows = build_rows(item.clip, item.probs, labels, keys[item.clip.index])
        stages = {**item.clip.stage_seconds(), "inference": item.infer_s, "consensus": time.perf_counter() - start}
        for stage, seconds in stages.items():
            summary.stages[stage] = summary.stages.get(stage, 0.0) + seconds
        summary.scored += 1
        summary.media_seconds += item.clip.duration or 0.0
        yield item.clip.index, rows


def predict_people(
    video: str | Path, backend: Backend, detector: FaceDetector | None = None, faces: WhichFaces = "largest"
) -> list[Result]:
    """One clip through the same path as `score` (load_clip_inputs, backend, build_rows): the same rows, one per person."""
    config = backend.contract.preprocess
    detector = detector or FaceDetector(config.face)
    key = file_key(Path(video).absolute())
    with one_blas_thread():
        clip = load_clip_inputs(key.path, config, detector, faces=faces)
        scored = next(score_clips([clip], backend, batch_size=max(1, config.n_segments)))
    return build_rows(scored.clip, scored.probs, backend.contract.labels, key)


def predict_clip(video: str | Path, backend: Backend, detector: FaceDetector | None = None) -> Result:
    """The clip's row for its largest person: `score`'s row for it."""
    return predict_people(video, backend, detector, "largest")[0]
