"""The prepare cache: decode and track faces once per clip, so that training epochs never run MTCNN.

What is cached, and why:
- the clip's track store (preprocess/tracks.py) as `score` makes it: the N planned test-mode frames tracked with
  the same detector settings, tracker and largest-person rule, so training's test-mode boxes are scoring's box
  for box (before, every 3rd frame was tracked and the boxes interpolated: with the default ONet follower they
  agreed with scoring's at IoU ~0.93). Train mode samples random frames; each takes its nearest planned frame's
  box (the one borrowing rule). N is the model's (`prepare --n-segments`); a cache serves another N through the
  same rule, but only its own N gets scoring's boxes exactly.
- Caching 224x224 crops of every frame would cost 5.6-6.0 MB per clip even
  compressed (~43 GB for CREMA-D) against ~1 KB of boxes; cropping on the fly
  costs 0.6-0.7 ms per segment and decoding the few frames wanted ~35-50 ms per
  clip, which DataLoader workers hide behind the training step. So the cache holds
  the boxes (and the decoded 16 kHz waveform, so epochs skip audio decoding)
  and the crops are cut on the fly by the shared `segments.extract`.

Layout of CACHE: `cache.json` (format, face parameters with the follower, sample rate, N), one `<clip>.npz` per
clip (written atomically, so a killed run leaves no half file and a rerun skips
the clips already done), `errors.jsonl` (one line per clip that failed in the
latest run, with the cause; damaged clips are skipped, never fatal), and `.lock`
while a run writes (one run per cache at a time). A cache of an older format is refused, saying to re-run prepare.

The cache's format and per-clip job live in box_cache.py. Runs: in this process, or in a WorkerPool (`run_jobs`), which isolates each clip:
a decoder that segfaults or hangs costs that clip an error line, not the corpus run.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from edge_emotion.config import FaceParams, PreprocessConfig
from edge_emotion.io.atomic import atomic_write_text, exclusive_lock
from edge_emotion.run.pool import DEFAULT_TIMEOUT_S, WorkerPool
from edge_emotion.run.threads import usable_cores
from edge_emotion.toolchain.train.box_cache import CACHE_FORMAT, CacheJob, OldCacheError, cache_file
from edge_emotion.toolchain.train.crema import ClipItem, Skipped, index_corpus

if TYPE_CHECKING:
    from edge_emotion.ray.cluster import RayOptions


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


def _check_cache_params(cache_dir: Path, params: dict[str, Any]) -> None:
    """A cache made with other face parameters or N would silently mix boxes: refuse it."""
    meta = cache_dir / "cache.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if old.get("format") != CACHE_FORMAT:
            raise OldCacheError(
                f"{cache_dir} holds a prepare cache of format {old.get('format')!r}, not {CACHE_FORMAT}; "
                f"re-run `edge-emotion prepare` into a new cache folder"
            )
        if old != params:
            raise ValueError(f"{cache_dir} was prepared with {old}, not {params}; use another cache folder")
    else:
        atomic_write_text(meta, json.dumps(params, indent=1) + "\n")


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
    n_segments: int = PreprocessConfig().n_segments,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    ray_options: RayOptions | None = None,
) -> PrepareReport:
    """Cache the track store and waveform of every indexed clip of `data_dir` for the model's N (`n_segments`);
    resumable, parallel over clips.

    One run at a time per cache (a second one is refused at once, naming the first one's pid):
    two would write the same files and log each failure twice. progress(done, total) is called
    after each clip; `timeout` is the seconds a worker may spend on one clip. `ray_options`: run the clips on
    a Ray cluster's actors instead of local workers (`prepare --executor ray`), the same job and cache.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    params = json.loads(
        json.dumps({"format": CACHE_FORMAT, "face": face.to_dict(), "sample_rate": sample_rate, "n_segments": n_segments})
    )
    with exclusive_lock(cache_dir):
        _check_cache_params(cache_dir, params)
        items, skipped = index_corpus(data_dir)
        report = PrepareReport(skipped_at_index=skipped)
        todo = [i for i in items if not cache_file(cache_dir, i.name).exists()]
        report.reused = [i.name for i in items if cache_file(cache_dir, i.name).exists()]
        # errors.jsonl: the failures of this run. Each run retries every failed clip (it has no cache file),
        # so appending would list a clip once per run.
        job = CacheJob(str(cache_dir), face, sample_rate, n_segments)
        if ray_options is None:
            results = run_jobs(todo, job, workers, timeout)
        else:
            from edge_emotion.toolchain.ray_prepare import run_jobs_on_ray

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
    """One worker per core this process may use (run/threads.py): MTCNN runs single-threaded in each."""
    return usable_cores()
