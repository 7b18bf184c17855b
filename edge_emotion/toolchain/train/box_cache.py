"""The training box cache's format and its per-clip job: the clip's track store written to disk, one `.npz`
atomically per clip; read back for training and calibration.

prepare tracks the N planned test-mode frames exactly as `score` does (the same plan, detector settings, tracker
and largest-person rule), so training's test-mode boxes are scoring's; a frame that is not planned (train mode
samples random ones) takes its nearest planned frame's box by the one borrowing rule (preprocess/tracks.py).

Kept apart from the corpus run (edge_emotion.toolchain.train.prepare) so the Ray runner
(edge_emotion.toolchain.ray_prepare) can run the same CacheJob without importing the local runner back.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion.config import FaceParams, PreprocessConfig
from edge_emotion.errors import MissingDependencyError
from edge_emotion.io.atomic import atomic_path
from edge_emotion.io.decode import Clip, open_clip
from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.preprocess.faces import Box, FaceDetector
from edge_emotion.preprocess.segments import plan_clip, track_planned
from edge_emotion.preprocess.tracks import borrow_boxes
from edge_emotion.run.pool import FileFn, FileResult
from edge_emotion.toolchain.train.crema import ClipItem

CACHE_FORMAT = "edge-emotion-prepare/2"  # /1: every k-th frame tracked, boxes interpolated (not scoring's boxes)


class OldCacheError(ValueError):
    """A cache written by another format: its boxes are not scoring's. The CLI says so in one line."""


@dataclass(frozen=True)
class CachedClip:
    """One clip from the cache: a Clip (waveform included, frames decoded on demand) and its track store.

    The store is what `score` tracks on the clip: the largest person's own box on each of the N planned test-mode
    frames. Any frame's box is its nearest planned frame's (the earlier on a tie), by the one borrowing rule.
    """

    clip: Clip
    frames: np.ndarray  # [N] the planned test-mode frames, in time order
    boxes: np.ndarray  # [N, 4] float32 x1 y1 x2 y2: the largest person's own box on each, NaN where not seen
    detected: np.ndarray  # [N] bool: their own face was found on the planned frame

    def boxes_for(self, frames: Sequence[int]) -> list[Box | None]:
        """Boxes of the given frame indices (None where the clip has no face anywhere): scoring's box on a planned
        frame, the nearest planned frame's on any other."""
        own: list[Box | None] = [_box(b) if seen else None for b, seen in zip(self.boxes, self.detected)]
        filled, _ = borrow_boxes(own)
        nearest = np.abs(np.asarray(frames)[:, None] - self.frames[None, :]).argmin(axis=1)  # [F] first on a tie
        return [filled[int(k)] for k in nearest]


def _box(row: np.ndarray) -> Box:
    x1, y1, x2, y2 = (float(v) for v in row)
    return x1, y1, x2, y2


def cache_file(cache_dir: str | Path, name: str) -> Path:
    return Path(cache_dir) / f"{name}.npz"


def track_clip(clip: Clip, detector: FaceDetector, n_segments: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clip's N planned test-mode frames and the largest person's own ([N, 4] boxes, NaN where unseen; [N] seen),
    tracked as `score` tracks them (segments.track_planned: the same frames, tracker and largest-person rule)."""
    segments = plan_clip(clip, PreprocessConfig(n_segments=n_segments, face=detector.params))
    _, people, _ = track_planned(clip, segments, detector, "largest")
    own: list[Box | None] = people[0].boxes if people else [None] * len(segments)
    boxes = np.array([b if b is not None else (np.nan,) * 4 for b in own], np.float32).reshape(-1, 4)  # [N, 4]
    return np.array([s.frame for s in segments], np.int64), boxes, np.array([b is not None for b in own])


def write_cached(path: Path, clip: Clip, frames: np.ndarray, boxes: np.ndarray, detected: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            frames=frames,
            boxes=boxes,
            detected=detected,
            waveform=clip.waveform,
            times=clip.frame_times.t,  # [F] when each frame is shown: training plans in time as scoring does
            problems=np.array(clip.problems, dtype=str),
            facts=np.array(
                [clip.fps, clip.frame_count, clip.width, clip.height, clip.sample_rate], dtype=np.float64
            ),
        )


def load_cached(cache_dir: str | Path, item: ClipItem) -> CachedClip:
    """Read one clip's cache entry; the video itself stays where the index found it (frames decode on demand)."""
    with np.load(cache_file(cache_dir, item.name), allow_pickle=False) as data:
        if "frames" not in data:
            raise OldCacheError(_old_cache(cache_dir, "an older format"))
        fps, frame_count, width, height, sample_rate = data["facts"].tolist()
        times = FrameTimes(data["times"], fps) if "times" in data else None
        problems = tuple(str(p) for p in data["problems"]) if "problems" in data else ()
        clip = Clip(Path(item.path), fps, int(frame_count), int(width), int(height), data["waveform"], int(sample_rate),
                    times, problems)
        return CachedClip(clip, data["frames"], data["boxes"], data["detected"])


@dataclass(frozen=True)
class CacheJob:
    """Caching as a worker job (edge_emotion.run.pool.WorkerJob): the detector once per process, then clip after clip.

    The same job runs in this process (workers = 0) and in a WorkerPool; a distributed
    runner can call `setup` once per actor the same way. The per-clip function returns a
    FileResult: `error` None means the clip's cache file is written.
    """

    cache_dir: str
    face: FaceParams
    sample_rate: int = 16_000
    n_segments: int = PreprocessConfig().n_segments  # the model's N: the planned frames tracked, as `score` plans them

    def setup(self, threads: int) -> FileFn[FileResult]:
        """Build the face detector; threads > 0 caps its threads (a pool spreads the cores over its workers),
        0 leaves the default (this process alone)."""
        detector = FaceDetector(self.face, threads=threads if threads > 0 else None)
        return functools.partial(self.cache_clip, detector)

    def failed(self, index: int, path: Path, cause: str) -> FileResult:
        return FileResult(index, str(path), cause)

    def cache_clip(self, detector: FaceDetector, path: Path, index: int) -> FileResult:
        """Decode one clip, detect its faces, write its cache file; a failure becomes `error`, never an exception."""
        result = FileResult(index, str(path))
        try:
            clip = open_clip(path, self.sample_rate)
            frames, boxes, detected = track_clip(clip, detector, self.n_segments)
            write_cached(cache_file(self.cache_dir, Path(path).stem), clip, frames, boxes, detected)
        except MissingDependencyError:
            raise  # not the clip's fault: stop and say what to install
        except Exception as exc:  # noqa: BLE001 - one damaged clip must never stop the corpus; the cause is logged
            result.error = f"{type(exc).__name__}: {exc}"
        return result


def cache_meta(cache_dir: str | Path) -> dict[str, Any]:
    """cache.json: the format, face parameters (the follower among them), sample rate and N the cache was made with.

    FileNotFoundError without one; OldCacheError for another format (its boxes are not scoring's)."""
    meta = Path(cache_dir) / "cache.json"
    if not meta.exists():
        raise FileNotFoundError(f"{cache_dir}: not a prepare cache (no cache.json); run `edge-emotion prepare` first")
    data: dict[str, Any] = json.loads(meta.read_text())
    if data.get("format") != CACHE_FORMAT:
        raise OldCacheError(_old_cache(cache_dir, f"format {data.get('format')!r}"))
    return data


def _old_cache(cache_dir: str | Path, what: str) -> str:
    return (
        f"{cache_dir}: a prepare cache of {what}, not {CACHE_FORMAT} (boxes tracked on the planned frames as `score` "
        f"tracks them); re-run `edge-emotion prepare` into a new cache folder"
    )


def cache_face_params(cache_dir: str | Path) -> FaceParams:
    """The face parameters the cache's boxes were made with: they go into the checkpoint, so scoring crops alike."""
    return FaceParams.from_dict(cache_meta(cache_dir)["face"])


