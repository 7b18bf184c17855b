"""Score a folder of videos (or one clip) with any backend: one driver, one batcher, for clips and windows.

    tasks: files (clips), or recordings cut into keyframe chunks (--window, timeline/chunks.py)
    --an executor's readers (local workers, run/read.py; Ray actors, ray/scoring.py)--> pieces (run/pieces.py)
    --SegmentBatcher: segments of many files and people, normalised and run through the backend exactly
    `batch_size` at a time--> [M, K] per person of a piece --run/rows.py: per chunk of a file its windows' rows
    (a clip: one window over the file)--> in scan order, chunk after chunk --> ResultsFile (CSV / JSONL)

Rows are written in the order of the sorted file list and of each file's windows, whatever order the workers
finish in, a chunk's as soon as every earlier window is written, so a run that was killed and resumed (from
the first unfinished chunk of a recording, run/results_file.py) writes exactly the file an uninterrupted run
writes. Workers and threads follow
run/threads.py. `score_files` is the one driver: `score_folder`, `score_timelines` and Ray's
`score_folder_ray` call it with their output and executor; `predict` is one file through the same path.
"""

from __future__ import annotations

import bisect
import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_emotion import defaults
from edge_emotion.backends import backend_for, open_backend
from edge_emotion.backends.base import Backend
from edge_emotion.contract import ModelContract
from edge_emotion.io.probe import VideoFacts
from edge_emotion.io.scan import DEFAULT_EXTENSIONS, Shard, find_videos, select_shard
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.preprocess.segments import model_faces
from edge_emotion.run.pieces import FaceSetup, Piece, ScoredPiece
from edge_emotion.run.pool import DEFAULT_TIMEOUT_S
from edge_emotion.run.read import ReadJob, clip_pieces, open_reader
from edge_emotion.run.result import FileKey, Kind, Result, file_key
from edge_emotion.run.results_file import CLIPS, WINDOWS, ResultsFile
from edge_emotion.run.rows import FileScores, assemble, file_rows
from edge_emotion.run.summary import Summary
from edge_emotion.run.threads import backend_threads, one_blas_thread, usable_cores
from edge_emotion.timeline.chunks import Chunk, Chunking, People, RecordingTask, recording_tasks, resumed_chunks
from edge_emotion.timeline.window_options import resolve_windowing

DEFAULT_BATCH_SIZE = defaults.BATCH_SIZE


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
class _Pending:
    piece: Piece
    offsets: list[int]  # [P + 1] where each person's segments start in the piece's order, then its size
    sent: int = 0  # segments already inferred, over its people in turn
    chunks: list[np.ndarray] = field(default_factory=list)  # [n_i, K] each
    infer_s: float = 0.0

    @property
    def n(self) -> int:
        return self.offsets[-1]


class SegmentBatcher:
    """Queue the segments of many pieces (all their people's) and run the backend on exactly `batch_size` at a time.

    A piece may be split across two calls; it completes when its last segment has been inferred. Exact batch
    sizes suit engines built for fixed shapes. Faces arrive as uint8 crops and are normalised here, one batch at
    a time, so a file's float32 faces never exist all at once.
    """

    def __init__(self, backend: Backend, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.backend = backend
        self.batch_size = batch_size
        self._pending: deque[_Pending] = deque()
        self._queued = 0  # segments waiting for the backend

    def add(self, piece: Piece) -> list[ScoredPiece]:
        """Queue a piece; return the pieces that completed (maybe none)."""
        item = _Pending(piece, [0, *np.cumsum([len(c.rows) for c in piece.people]).tolist()])
        self._pending.append(item)
        self._queued += item.n
        done: list[ScoredPiece] = []
        while self._queued >= self.batch_size:
            done += self._run(self.batch_size)
        return done + self._complete()

    def flush(self) -> list[ScoredPiece]:
        """Run what is left, in batches of at most `batch_size`."""
        done: list[ScoredPiece] = []
        while self._queued:
            done += self._run(min(self._queued, self.batch_size))
        return done + self._complete()

    def _run(self, count: int) -> list[ScoredPiece]:
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
                person = bisect.bisect_right(item.offsets, item.sent) - 1
                k = item.sent - item.offsets[person]
                crops = item.piece.people[person]
                step = min(len(crops.rows) - k, take)
                faces.append(model_faces(crops.faces[k : k + step], self.backend.contract.preprocess.face))
                specs.append(item.piece.spectrograms[crops.rows[k : k + step]])
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
        return self._complete()

    def _complete(self) -> list[ScoredPiece]:
        """The pieces at the head of the queue whose every segment is inferred, split back per person."""
        done: list[ScoredPiece] = []
        while self._pending and self._pending[0].sent == self._pending[0].n:
            item = self._pending.popleft()
            probs = np.concatenate(item.chunks) if item.chunks else np.zeros((0, 0), np.float32)  # [n, K]
            done.append(ScoredPiece(item.piece, np.split(probs, item.offsets[1:-1]), item.infer_s))
        return done


def score_pieces(pieces: Iterable[Piece], backend: Backend, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[ScoredPiece]:
    """Run the backend over a stream of pieces, batching segments across files; an error piece passes at once."""
    batcher = SegmentBatcher(backend, batch_size)
    for piece in pieces:
        if piece.chunk is None:
            yield ScoredPiece(piece, None)
        else:
            yield from batcher.add(piece)
    yield from batcher.flush()


def in_file_order(parts: Iterable[FileScores], first: Mapping[int, int]) -> Iterator[FileScores]:
    """Chunks of files that arrive in any order -> file 0's chunks in order (from `first`'s chunk on, else 0), then
    file 1's, and so on; an error ends its file (chunks of it still waiting are dropped).

    Only scored chunks wait here (their [S, K] arrays), never model inputs.
    """
    waiting: dict[tuple[int, int], FileScores] = {}
    file, chunk = 0, first.get(0, 0)
    for part in parts:
        waiting[(part.index, part.number)] = part
        while (head := waiting.pop((file, -1), None) or waiting.pop((file, chunk), None)) is not None:
            yield head
            chunk += 1
            if head.last:
                for key in [k for k in waiting if k[0] == file]:
                    del waiting[key]
                file, chunk = file + 1, first.get(file + 1, 0)
    if waiting:
        raise RuntimeError(f"chunks {sorted(waiting)} were never preceded by file {file}'s chunk {chunk}")


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


class Scorer(Protocol):
    """An executor at work: the model's facts, and scored pieces for tasks (in any order)."""

    name: str
    contract: ModelContract

    @property
    def precision(self) -> str: ...

    def score(self, tasks: Iterable[RecordingTask], job: ReadJob) -> Iterator[ScoredPiece]: ...


Executor = Callable[[str | Path, ScoreOptions], AbstractContextManager[Scorer]]


@dataclass
class LocalScorer:
    """This machine: the options' workers read (run/read.py), the backend runs in this process."""

    backend: Backend
    options: ScoreOptions
    name: str = field(init=False)
    contract: ModelContract = field(init=False)
    precision: str = field(init=False)

    def __post_init__(self) -> None:
        self.name, self.contract, self.precision = self.backend.name, self.backend.contract, self.backend.precision

    def score(self, tasks: Iterable[RecordingTask], job: ReadJob) -> Iterator[ScoredPiece]:
        with open_reader(job, self.options.workers, self.options.timeout) as reader:
            yield from score_pieces(reader.run(tasks), self.backend, self.options.batch_size)


@contextmanager
def local(artifact: str | Path, options: ScoreOptions) -> Iterator[Scorer]:
    """The local executor."""
    with open_scoring_backend(artifact, options) as backend, one_blas_thread():
        yield LocalScorer(backend, options)


def score_files(
    root: str | Path, artifact: str | Path, output: str | Path, options: ScoreOptions = ScoreOptions(),
    progress: ScoreProgress | None = None, *, windows: bool = False, executor: Executor = local, chunking: Chunking = Chunking(),
) -> Summary:
    """The one driver: every video under `root` into `output` (a row per clip and person, or with `windows` per
    window and person), skipping files already complete there (same path, size, mtime), on any executor.

    With windows and two workers or more, a long recording is cut into chunks (`chunking`) that the workers share."""
    progress = progress or NoProgress()
    started = time.perf_counter()
    keys = plan_folder(root, options)
    with executor(artifact, options) as scorer:
        config, labels = scorer.contract.preprocess, scorer.contract.labels
        windowing = resolve_windowing(config, options.window, options.hop) if windows else None
        model = model_identity(artifact, scorer)
        if windowing:
            model.update(window_s=f"{windowing.window:g}", hop_s=f"{windowing.hop:g}")
        kind = WINDOWS if windowing else CLIPS
        with ResultsFile(output, labels, model, options.faces, kind) as results:
            todo = results.pending(keys)
            summary = Summary(skipped=len(keys) - len(todo))
            progress.start(len(todo), summary.skipped)
            if todo:
                job = ReadJob(config, options.face_setup, windowing)
                paths = [Path(k.path) for k in todo]
                planned, writing = _resume(results, todo, job), None
                tasks = (recording_tasks(paths, job.grid_for, chunking, options.workers, config, planned) if windowing
                         else (RecordingTask(i, p) for i, p in enumerate(paths)))
                first = {i: chunks[0].number for i, (_, chunks) in planned.items()}
                for part in in_file_order(assemble(scorer.score(tasks, job), job.plan, summary.stages), first):
                    if writing is None or writing.index != part.index:
                        state = results.resume.state if results.resume and part.index in first else None
                        writing = _Writing(part.index, People.resumed(config.face.detect_every, state), state is not None)
                    if write_part(results, todo[part.index], part, writing, labels, options.faces, kind.name, summary):
                        assert writing.first is not None  # every timeline has a window, every window a row
                        progress.advance(writing.first)
            summary.rows, summary.labels, summary.statuses, summary.failures = results.counts()
    summary.seconds = time.perf_counter() - started
    return summary


def score_folder(
    root: str | Path, artifact: str | Path, output: str | Path, options: ScoreOptions = ScoreOptions(),
    progress: ScoreProgress | None = None,
) -> Summary:
    """Score every video under `root` into one row per clip and person in `output` (resumable)."""
    return score_files(root, artifact, output, options, progress)


@dataclass
class _Writing:
    """The file whose rows are being written: its people so far, whether rows of it are in the results file."""

    index: int
    people: People
    resumed: bool  # rows of it were there before this run
    first: Result | None = None  # the first row this run wrote of it (for progress)


def _resume(results: ResultsFile, todo: Sequence[FileKey], job: ReadJob) -> dict[int, tuple[VideoFacts, list[Chunk]]]:
    """The chunks still to score of the file that a killed run left part-way (results.resume), by its place in
    `todo`; none when there is no such file, or its chunks cannot be planned as they were (then its rows go)."""
    resume = results.resume
    if resume is None or job.windowing is None:
        return {}
    index = next(i for i, k in enumerate(todo) if k.path == resume.path)
    planned = resumed_chunks(Path(resume.path), job.grid_for, job.config, resume.count, resume.windows)
    if planned is None:
        results.drop([resume.path])
        results.resume = None
        return {}
    return {index: planned}


def write_part(results: ResultsFile, key: FileKey, part: FileScores, writing: _Writing, labels: Sequence[str],
               faces: WhichFaces, kind: Kind, summary: Summary) -> bool:
    """Write a file's next chunk (its windows' rows) or its error row; True once the file is done (then counted).

    A chunk of a chunked recording leaves its people in the results file's chunk log before its rows (a resume
    starts after the last chunk whose rows are all in). An error after rows of the file were written (this run,
    or one before) takes their place: a file's rows are its windows or its one error row.
    """
    start = time.perf_counter()
    if part.timeline is None and (writing.resumed or writing.first is not None):
        results.drop([key.path])
        writing.first = None
    groups = list(file_rows(key, part, labels, faces, kind, writing.people))
    if part.chunks and part.chunks[0].chunk.count > 1 and not part.last:
        results.log_chunk(key, part.chunks[0].chunk, writing.people.state())
    for rows in groups:
        results.write_rows(rows)
        writing.first = writing.first or rows[0]
    summary.stages["consensus"] = summary.stages.get("consensus", 0.0) + time.perf_counter() - start
    summary.media_seconds += (part.duration or 0.0) if part.last else 0.0
    summary.scored += part.last
    return part.last


def predict_people(
    video: str | Path, backend: Backend, detector: FaceDetector | None = None, faces: WhichFaces = "largest"
) -> list[Result]:
    """One clip through the same path as `score` (its reader, batcher, assembly and rows): the same rows, one per person."""
    config = backend.contract.preprocess
    job = ReadJob(config, FaceSetup(faces))
    key = file_key(Path(video).absolute())
    with one_blas_thread():
        pieces = clip_pieces(RecordingTask(0, Path(key.path)), config, detector or FaceDetector(config.face), faces)
        (file,) = assemble(score_pieces(pieces, backend, batch_size=max(1, config.n_segments)), job.plan, {})
    return [row for rows in file_rows(key, file, backend.contract.labels, faces, "clip") for row in rows]


def predict_clip(video: str | Path, backend: Backend, detector: FaceDetector | None = None) -> Result:
    """The clip's row for its largest person: `score`'s row for it."""
    return predict_people(video, backend, detector, "largest")[0]
