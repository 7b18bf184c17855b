"""The prepare cache: decode and run MTCNN once per clip, so that training epochs never run MTCNN.

What is cached, and why (measured on the two CREMA-D fixture clips, 2 CPU cores):
- MTCNN costs 37-44 ms per 480x360 frame; a 2 s clip has ~60 frames, so detecting
  every frame of all 7,442 clips takes ~5 h on one core. Detecting every k-th
  frame and interpolating the boxes linearly in between is k times cheaper; the
  interpolated corners are off by 1.0 px (k=2), 1.6 px (k=3), 2.2-2.6 px (k=5) on
  average against per-frame detection, on a ~94 px face (MTCNN's own
  frame-to-frame jitter is about 1 px). Default k = 3.
- Caching 224x224 crops of every frame would cost 5.6-6.0 MB per clip even
  compressed (~43 GB for CREMA-D) against ~1 KB of boxes; cropping on the fly
  costs 0.6-0.7 ms per segment and decoding the few frames wanted ~35-50 ms per
  clip, which DataLoader workers hide behind the training step. So the cache holds
  per-frame boxes (and the decoded 16 kHz waveform, so epochs skip audio decoding)
  and the crops are cut on the fly by the shared `segments.extract`.

Layout of CACHE: `cache.json` (face parameters, k, format), one `<clip>.npz` per
clip (written atomically, so a killed run leaves no half file and a rerun skips
the clips already done), `errors.jsonl` (one line per clip that failed in the
latest run, with the cause; damaged clips are skipped, never fatal), and `.lock`
while a run writes (one run per cache at a time).

Runs: in this process, or in a WorkerPool (`run_jobs`), which isolates each clip:
a decoder that segfaults or hangs costs that clip an error line, not the corpus run.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from edge_emotion import defaults
from edge_emotion.atomic import atomic_path, atomic_write_text, exclusive_lock
from edge_emotion.decode import Clip, open_clip, read_frames
from edge_emotion.errors import MissingDependencyError
from edge_emotion.faces import Box, FaceDetector, FaceParams
from edge_emotion.train.crema import ClipItem, Skipped, index_corpus
from edge_emotion.workers import DEFAULT_TIMEOUT_S, PreparedClip, PrepareFn, WorkerPool

if TYPE_CHECKING:
    from edge_emotion.ray_engine.cluster import RayOptions

CACHE_FORMAT = "edge-emotion-prepare/1"
DEFAULT_DETECT_EVERY = defaults.DETECT_EVERY
DETECT_CHUNK = 16  # frames per MTCNN call: bounds memory, batching gains nothing on the CPU


@dataclass
class PrepareReport:
    """What a prepare run did: clips cached now, found done already, and failed (with causes)."""

    done: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: list[Skipped] = field(default_factory=list)
    skipped_at_index: list[Skipped] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.done)} clips prepared, {len(self.reused)} already cached, "
            f"{len(self.failed)} failed, {len(self.skipped_at_index)} skipped by the index"
        )


@dataclass(frozen=True)
class CachedClip:
    """One clip from the cache: a Clip (waveform included, frames decoded on demand) and per-frame boxes."""

    clip: Clip
    boxes: np.ndarray  # [F, 4] float32 x1 y1 x2 y2, NaN where the clip has no face at all
    detected: np.ndarray  # [F] bool: MTCNN ran on this frame and found a face

    def boxes_for(self, frames: Sequence[int]) -> list[Box | None]:
        """Boxes of the given frame indices (None where the clip has no face anywhere)."""
        return [None if np.isnan(self.boxes[f, 0]) else tuple(float(v) for v in self.boxes[f]) for f in frames]


def cache_file(cache_dir: str | Path, name: str) -> Path:
    return Path(cache_dir) / f"{name}.npz"


def interpolate_boxes(frame_count: int, indices: Sequence[int], boxes: Sequence[Box | None]) -> np.ndarray:
    """Boxes at detected frames -> [F, 4] boxes for every frame: linear in between, nearest beyond the ends.

    Frames where MTCNN found nothing are treated like frames it did not look at;
    a clip without any face gets NaN everywhere (the crop falls back to the centre).
    """
    found = [(i, b) for i, b in zip(indices, boxes) if b is not None]
    out = np.full((frame_count, 4), np.nan, dtype=np.float32)  # [F, 4]
    if not found:
        return out
    xs = np.array([i for i, _ in found], dtype=np.float64)  # [D]
    ys = np.array([b for _, b in found], dtype=np.float64)  # [D, 4]
    every = np.arange(frame_count, dtype=np.float64)
    for c in range(4):
        out[:, c] = np.interp(every, xs, ys[:, c])
    return out


def detection_frames(frame_count: int, every: int) -> list[int]:
    """Every k-th frame, and always the last one, so interpolation never extrapolates inside the clip."""
    frames = list(range(0, frame_count, max(1, every)))
    return frames if frames[-1] == frame_count - 1 else frames + [frame_count - 1]


def detect_clip(clip: Clip, detector: FaceDetector, every: int) -> tuple[np.ndarray, np.ndarray]:
    """Run MTCNN on every k-th frame of the clip -> ([F, 4] interpolated boxes, [F] detected mask)."""
    wanted = detection_frames(clip.frame_count, every)
    decoded = read_frames(clip, wanted)
    found: list[Box | None] = []
    for start in range(0, len(wanted), DETECT_CHUNK):
        found += detector.detect([decoded[i] for i in wanted[start : start + DETECT_CHUNK]])
    detected = np.zeros(clip.frame_count, dtype=bool)
    detected[[i for i, b in zip(wanted, found) if b is not None]] = True
    return interpolate_boxes(clip.frame_count, wanted, found), detected


def write_cached(path: Path, clip: Clip, boxes: np.ndarray, detected: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            boxes=boxes,
            detected=detected,
            waveform=clip.waveform,
            facts=np.array(
                [clip.fps, clip.frame_count, clip.width, clip.height, clip.sample_rate], dtype=np.float64
            ),
        )


def load_cached(cache_dir: str | Path, item: ClipItem) -> CachedClip:
    """Read one clip's cache entry; the video itself stays where the index found it (frames decode on demand)."""
    with np.load(cache_file(cache_dir, item.name), allow_pickle=False) as data:
        fps, frame_count, width, height, sample_rate = data["facts"].tolist()
        clip = Clip(Path(item.path), fps, int(frame_count), int(width), int(height), data["waveform"], int(sample_rate))
        return CachedClip(clip, data["boxes"], data["detected"])


@dataclass(frozen=True)
class CacheJob:
    """Caching as a worker job (edge_emotion.workers.WorkerJob): the detector once per process, then clip after clip.

    The same job runs in this process (workers = 0) and in a WorkerPool; a distributed
    runner can call `setup` once per actor the same way. The per-clip function returns a
    PreparedClip without model inputs: `error` None means the clip's cache file is written.
    """

    cache_dir: str
    face: FaceParams
    sample_rate: int = 16_000
    every: int = DEFAULT_DETECT_EVERY

    def setup(self, threads: int) -> PrepareFn:
        """Build the face detector; threads > 0 caps its threads (a pool spreads the cores over its workers),
        0 leaves the default (this process alone)."""
        detector = FaceDetector(self.face, threads=threads if threads > 0 else None)
        return functools.partial(self.cache_clip, detector)

    def cache_clip(self, detector: FaceDetector, path: Path, index: int) -> PreparedClip:
        """Decode one clip, detect its faces, write its cache file; a failure becomes `error`, never an exception."""
        result = PreparedClip(index, str(path))
        try:
            clip = open_clip(path, self.sample_rate)
            result.fps, result.duration = clip.fps, clip.duration
            boxes, detected = detect_clip(clip, detector, self.every)
            write_cached(cache_file(self.cache_dir, Path(path).stem), clip, boxes, detected)
        except MissingDependencyError:
            raise  # not the clip's fault: stop and say what to install
        except Exception as exc:  # noqa: BLE001 - one damaged clip must never stop the corpus; the cause is logged
            result.error = f"{type(exc).__name__}: {exc}"
        return result


def _check_cache_params(cache_dir: Path, params: dict[str, Any]) -> None:
    """A cache made with other face parameters would silently mix boxes: refuse it."""
    meta = cache_dir / "cache.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if old != params:
            raise ValueError(f"{cache_dir} was prepared with {old}, not {params}; use another cache folder")
    else:
        atomic_write_text(meta, json.dumps(params, indent=1) + "\n")


def cache_face_params(cache_dir: str | Path) -> FaceParams:
    """The face parameters the cache's boxes were made with: they go into the checkpoint, so scoring crops alike."""
    meta = Path(cache_dir) / "cache.json"
    if not meta.exists():
        raise FileNotFoundError(f"{cache_dir}: not a prepare cache (no cache.json); run `edge-emotion prepare` first")
    return FaceParams.from_dict(json.loads(meta.read_text())["face"])


def _log_error(log: IO[str], item: ClipItem, cause: str) -> None:
    """One line of CACHE/errors.jsonl, flushed at once (a killed run keeps the lines so far)."""
    log.write(json.dumps({"clip": item.name, "path": item.path, "error": cause}) + "\n")
    log.flush()


def run_jobs(
    todo: Sequence[ClipItem], job: CacheJob, workers: int, timeout: float = DEFAULT_TIMEOUT_S
) -> Iterator[tuple[ClipItem, str | None]]:
    """(clip, error or None) for every clip of `todo`, in completion order.

    workers = 0: in this process (no start-up, no timeout; best for a few clips). workers >= 1: a
    WorkerPool, so a clip that crashes its decoder or hangs past `timeout` becomes an error and the
    run goes on with a fresh worker; a worker whose setup fails or hangs stops the run with one error.
    """
    if workers <= 0:
        cache = job.setup(threads=0)
        for index, item in enumerate(todo):
            yield item, cache(Path(item.path), index).error
        return
    # spawn (the pool's default): a forked child of a process that already ran torch's thread pools can hang
    with WorkerPool(job, workers=workers, timeout=timeout) as pool:
        for result in pool.run([Path(item.path) for item in todo]):
            yield todo[result.index], result.error


def prepare_corpus(
    data_dir: str | Path,
    cache_dir: str | Path,
    face: FaceParams = FaceParams(),
    sample_rate: int = 16_000,
    every: int = DEFAULT_DETECT_EVERY,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    ray_options: RayOptions | None = None,
) -> PrepareReport:
    """Cache boxes and waveforms of every indexed clip of `data_dir`; resumable, parallel over clips.

    One run at a time per cache (a second one is refused at once, naming the first one's pid):
    two would write the same files and log each failure twice. progress(done, total) is called
    after each clip; `timeout` is the seconds a worker may spend on one clip. `ray_options`: run the clips on
    a Ray cluster's actors instead of local workers (`prepare --engine ray`), the same job and cache.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    params = json.loads(
        json.dumps({"format": CACHE_FORMAT, "face": face.to_dict(), "sample_rate": sample_rate, "detect_every": every})
    )
    with exclusive_lock(cache_dir):
        _check_cache_params(cache_dir, params)
        items, skipped = index_corpus(data_dir)
        report = PrepareReport(skipped_at_index=skipped)
        todo = [i for i in items if not cache_file(cache_dir, i.name).exists()]
        report.reused = [i.name for i in items if cache_file(cache_dir, i.name).exists()]
        # errors.jsonl: the failures of this run. Each run retries every failed clip (it has no cache file),
        # so appending would list a clip once per run.
        job = CacheJob(str(cache_dir), face, sample_rate, every)
        if ray_options is None:
            results = run_jobs(todo, job, workers, timeout)
        else:
            from edge_emotion.ray_engine.preparing import run_jobs_on_ray

            results = run_jobs_on_ray(todo, job, timeout, ray_options)
        with open(cache_dir / "errors.jsonl", "w", encoding="utf-8") as log:
            for item, error in results:
                if error is None:
                    report.done.append(item.name)
                else:
                    report.failed.append(Skipped(item.path, error))
                    _log_error(log, item, error)
                if progress is not None:
                    progress(len(report.done) + len(report.failed), len(todo))
    return report


def default_workers() -> int:
    """One worker per core: MTCNN runs single-threaded in each."""
    return max(1, os.cpu_count() or 1)
