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
the clips already done), `errors.jsonl` (one line per clip that failed, with the
cause; damaged clips are skipped, never fatal).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion.atomic import atomic_path, atomic_write_text
from edge_emotion.decode import Clip, open_clip, read_frames
from edge_emotion.errors import MissingDependencyError
from edge_emotion.faces import Box, FaceDetector, FaceParams
from edge_emotion.train.crema import ClipItem, Skipped, index_corpus

CACHE_FORMAT = "edge-emotion-prepare/1"
DEFAULT_DETECT_EVERY = 3
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
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
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


@functools.lru_cache(maxsize=1)
def _worker_detector(params_json: str) -> FaceDetector:
    """One MTCNN per process, built on its first clip (a process pool cannot pickle a detector)."""
    return FaceDetector(FaceParams.from_dict(json.loads(params_json)))


def _init_worker() -> None:
    """Pool workers run one thread each: the pool, not torch, spreads the work over the cores."""
    import torch

    torch.set_num_threads(1)


def prepare_clip(
    item: ClipItem, cache_dir: str, params_json: str, sample_rate: int, every: int
) -> tuple[str, str | None]:
    """Decode one clip, detect its faces and write its cache file -> (name, error or None). Runs in a worker."""
    try:
        clip = open_clip(item.path, sample_rate)
        boxes, detected = detect_clip(clip, _worker_detector(params_json), every)
        write_cached(cache_file(cache_dir, item.name), clip, boxes, detected)
        return item.name, None
    except MissingDependencyError:
        raise  # not the clip's fault: stop and say what to install
    except Exception as exc:  # noqa: BLE001 - one damaged clip must never stop the corpus; the cause is logged
        return item.name, f"{type(exc).__name__}: {exc}"


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


def _log_error(cache_dir: Path, name: str, path: str, cause: str) -> None:
    with open(cache_dir / "errors.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"clip": name, "path": path, "error": cause}) + "\n")


def prepare_corpus(
    data_dir: str | Path,
    cache_dir: str | Path,
    face: FaceParams = FaceParams(),
    sample_rate: int = 16_000,
    every: int = DEFAULT_DETECT_EVERY,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareReport:
    """Cache boxes and waveforms of every indexed clip of `data_dir`; resumable, parallel over clips.

    workers = 0 runs in this process (no pool start-up, best for a few clips);
    progress(done, total) is called after each clip.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    params = json.loads(
        json.dumps({"format": CACHE_FORMAT, "face": face.to_dict(), "sample_rate": sample_rate, "detect_every": every})
    )
    _check_cache_params(cache_dir, params)
    items, skipped = index_corpus(data_dir)
    report = PrepareReport(skipped_at_index=skipped)
    todo = [i for i in items if not cache_file(cache_dir, i.name).exists()]
    report.reused = [i.name for i in items if cache_file(cache_dir, i.name).exists()]
    by_name = {i.name: i for i in todo}
    args = (str(cache_dir), json.dumps(face.to_dict()), sample_rate, every)

    def record(name: str, error: str | None) -> None:
        if error is None:
            report.done.append(name)
        else:
            report.failed.append(Skipped(by_name[name].path, error))
            _log_error(cache_dir, name, by_name[name].path, error)
        if progress is not None:
            progress(len(report.done) + len(report.failed), len(todo))

    if workers <= 0:
        for item in todo:
            record(*prepare_clip(item, *args))
    else:
        # spawn: a forked child of a process that already ran torch's thread pools can hang
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
        ) as pool:
            futures = [pool.submit(prepare_clip, item, *args) for item in todo]
            for future in as_completed(futures):
                record(*future.result())
    return report


def default_workers() -> int:
    """One worker per core: MTCNN runs single-threaded in each."""
    return max(1, os.cpu_count() or 1)
