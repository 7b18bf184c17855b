"""The training box cache's format and its per-clip job: decode a clip, track faces over every k-th frame (the
tracker scoring uses), interpolate the largest person's boxes, write one `.npz` atomically; read it back for
training and calibration.

Kept apart from the corpus run (edge_emotion.toolchain.train.prepare) so the Ray runner
(edge_emotion.toolchain.ray_prepare) can run the same CacheJob without importing the local runner back.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_emotion import defaults
from edge_emotion.toolchain.train.crema import ClipItem
from edge_emotion.config import FaceParams
from edge_emotion.errors import MissingDependencyError
from edge_emotion.io.atomic import atomic_path
from edge_emotion.io.decode import Clip, open_clip, read_frames
from edge_emotion.preprocess.faces import Box, FaceDetector
from edge_emotion.preprocess.people import chosen_people
from edge_emotion.run.pool import FileFn, FileResult

CACHE_FORMAT = "edge-emotion-prepare/1"
DEFAULT_DETECT_EVERY = defaults.DETECT_EVERY


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
    """Track faces over every k-th frame of the clip (the tracker scoring uses) -> the largest person's
    ([F, 4] interpolated boxes, [F] mask of the frames where their own face was found)."""
    wanted = detection_frames(clip.frame_count, every)
    decoded = read_frames(clip, wanted)
    people = chosen_people(detector.track([decoded[i] for i in wanted]), "largest")
    found: list[Box | None] = people[0].boxes if people else [None] * len(wanted)
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
    """Caching as a worker job (edge_emotion.run.pool.WorkerJob): the detector once per process, then clip after clip.

    The same job runs in this process (workers = 0) and in a WorkerPool; a distributed
    runner can call `setup` once per actor the same way. The per-clip function returns a
    FileResult: `error` None means the clip's cache file is written.
    """

    cache_dir: str
    face: FaceParams
    sample_rate: int = 16_000
    every: int = DEFAULT_DETECT_EVERY

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
            boxes, detected = detect_clip(clip, detector, self.every)
            write_cached(cache_file(self.cache_dir, Path(path).stem), clip, boxes, detected)
        except MissingDependencyError:
            raise  # not the clip's fault: stop and say what to install
        except Exception as exc:  # noqa: BLE001 - one damaged clip must never stop the corpus; the cause is logged
            result.error = f"{type(exc).__name__}: {exc}"
        return result


def cache_face_params(cache_dir: str | Path) -> FaceParams:
    """The face parameters the cache's boxes were made with: they go into the checkpoint, so scoring crops alike."""
    meta = Path(cache_dir) / "cache.json"
    if not meta.exists():
        raise FileNotFoundError(f"{cache_dir}: not a prepare cache (no cache.json); run `edge-emotion prepare` first")
    return FaceParams.from_dict(json.loads(meta.read_text())["face"])


