"""Calibration data: real preprocessed segment pairs (face crop + spectrogram), chosen deterministically.

Why real segments: INT8 ranges come from the activations the deployed model will
see; random tensors give ranges that clip real faces and spectrograms.

Selection (pure, so a rebuild picks the same segments): clips are grouped by
the class in their CREMA-D name (AAAA_SSS_EEE_LL; other names form one
"unknown" group), ordered inside a group by a seeded hash of the name (actors
mix), and taken round-robin across classes; each clip gives `per_clip`
test-mode segments (middle frame of each of `per_clip` equal segments). Clips
that fail to decode are skipped with a warning, never fatal.

A folder smaller than asked for is used as it is, down to MIN_SEGMENTS: a user
with a few clips gets a calibrated model, and the export warns how many
segments were used and the INT8-vs-FP32 agreement reached on held-out ones.
Why 16: two calibration batches of 8, and with the default N = 10 two clips;
min/max ranges from fewer segments are a sample of one or two faces and voices.
Below it calibration is refused (CalibrationDataError), saying what would help.

Held-out segments
for the INT8-vs-FP32 agreement come from the clips after the calibration ones;
with too few clips, from the same clips at other frames (train-mode positions,
seeded), and the report says so.

Two sources of clips: a folder of videos (faces detected now with MTCNN) or the
prepare cache (`edge_emotion.toolchain.train.prepare`: boxes cached, no MTCNN), which
also needs the video folder because frames are decoded on demand.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_emotion import defaults
from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import EdgeEmotionError
from edge_emotion.io.decode import open_clip
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.plan import Mode, plan_segments
from edge_emotion.preprocess.segments import SegmentInputs, extract
from edge_emotion.toolchain.train.crema import VIDEO_SUFFIXES, parse_name, video_dir

DEFAULT_SEGMENTS = defaults.CALIB_SEGMENTS
DEFAULT_HOLDOUT = defaults.CALIB_HOLDOUT
MIN_SEGMENTS = defaults.CALIB_MIN_SEGMENTS  # fewer real segments are refused (see the module docstring)
UNKNOWN = "unknown"


class CalibrationDataError(EdgeEmotionError, ValueError):
    """The calibration folder cannot give the minimum of segments (or holds no usable clip)."""


def minimum_segments(asked: int) -> int:
    """The fewest segments a calibration asking for `asked` accepts: MIN_SEGMENTS, or all of a smaller request."""
    return min(MIN_SEGMENTS, asked)


def _too_few(clips: int, got: int, asked: int, per_clip: int, where: str) -> CalibrationDataError:
    return CalibrationDataError(
        f"{where}{clips} clip(s) give only {got} of the {asked} calibration segments asked for, fewer than the "
        f"minimum of {minimum_segments(asked)}: add clips, or take more segments from each clip "
        f"(--calib-per-clip, now {per_clip})"
    )


def check_enough_clips(
    clips: int, per_clip: int, asked: int, folder: str | Path, cache_dir: str | Path | None = None
) -> None:
    """Refuse before any decoding a folder whose clips cannot give the minimum at `per_clip` segments each."""
    if clips == 0:
        cached = f" with an entry in the prepare cache {cache_dir}" if cache_dir is not None else ""
        raise CalibrationDataError(f"{folder}: no video clips{cached} to calibrate on")
    if clips * per_clip < minimum_segments(asked):
        raise _too_few(clips, clips * per_clip, asked, per_clip, f"{folder}: ")


def shortfall_warning(used: int, asked: int, clips: int, agreement: float, holdout: int) -> str | None:
    """The warning for a calibration on fewer segments than asked for (None when all were there)."""
    if used >= asked:
        return None
    return (
        f"INT8 calibrated on {used} of the {asked} segments asked for (all that {clips} clip(s) give; minimum "
        f"{minimum_segments(asked)}): top-1 agreement with FP32 {agreement:.3f} on {holdout} held-out segments; "
        f"more clips give ranges closer to what the model will see"
    )


@dataclass(frozen=True)
class ClipRef:
    """One candidate clip: its video file, its name (no suffix) and the class its name carries."""

    path: Path
    name: str
    label: str


@dataclass
class SegmentBatch:
    """Preprocessed segments of one clip."""

    faces: np.ndarray  # [n, 3, 224, 224] float32
    spectrograms: np.ndarray  # [n, 1, 192, 120] float32
    clip: str

    def __len__(self) -> int:
        return int(self.faces.shape[0])


#: (clip, number of segments, plan mode, rng) -> that clip's preprocessed segments
SegmentLoader = Callable[[ClipRef, int, Mode, "np.random.Generator | None"], SegmentInputs]


def label_of(name: str) -> str:
    """The emotion code of a CREMA-D name (AAAA_SSS_EEE_LL), or 'unknown'."""
    item = parse_name(name)
    return UNKNOWN if isinstance(item, str) else item.emotion


def list_videos(folder: str | Path) -> list[ClipRef]:
    """Video files of a folder (CREMA-D's VideoFlash/ inside it if present), sorted by name."""
    folder = video_dir(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory of videos")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    return [ClipRef(p, p.stem, label_of(p.stem)) for p in paths]


def order_clips(clips: Sequence[ClipRef], seed: int = 0) -> list[ClipRef]:
    """Deterministic order spreading classes evenly: round-robin over classes, seeded hash order inside each."""
    groups: dict[str, list[ClipRef]] = {}
    for clip in clips:
        groups.setdefault(clip.label, []).append(clip)
    for members in groups.values():
        members.sort(key=lambda c: hashlib.sha256(f"{seed}:{c.name}".encode()).hexdigest())
    ordered: list[ClipRef] = []
    for rank in range(max((len(m) for m in groups.values()), default=0)):
        ordered += [groups[label][rank] for label in sorted(groups) if rank < len(groups[label])]
    return ordered


def detected_loader(config: PreprocessConfig, detector: FaceDetector) -> SegmentLoader:
    """Segments of a video with faces found by MTCNN now (the scoring path)."""

    def load(ref: ClipRef, n: int, mode: Mode, rng: np.random.Generator | None) -> SegmentInputs:
        clip = open_clip(ref.path, config.audio.sample_rate)
        segments = plan_segments(n, clip.frame_times, mode, rng, config.audio.jitter_s)
        return extract(clip, segments, config, detector=detector)

    return load


def cached_loader(config: PreprocessConfig, cache_dir: str | Path) -> SegmentLoader:
    """Segments of a clip whose face boxes the prepare cache holds (no MTCNN; the training path)."""
    from edge_emotion.toolchain.train.box_cache import load_cached

    def load(ref: ClipRef, n: int, mode: Mode, rng: np.random.Generator | None) -> SegmentInputs:
        item = parse_name(ref.name, str(ref.path))
        if isinstance(item, str):
            raise EdgeEmotionError(f"{ref.path}: {item}")
        cached = load_cached(cache_dir, item)
        segments = plan_segments(n, cached.clip.frame_times, mode, rng, config.audio.jitter_s)
        return extract(cached.clip, segments, config, boxes=cached.boxes_for([s.frame for s in segments]))

    return load


def cached_clips(data_dir: str | Path, cache_dir: str | Path) -> list[ClipRef]:
    """The videos of `data_dir` that the prepare cache in `cache_dir` has an entry for."""
    from edge_emotion.toolchain.train.box_cache import cache_file

    return [ref for ref in list_videos(data_dir) if cache_file(cache_dir, ref.name).is_file()]


class SegmentSource:
    """Calibration and held-out segments from an ordered list of clips; deterministic for a given seed.

    Not a god object: it only walks the clip order; how a clip becomes segments is the loader.
    """

    def __init__(
        self,
        clips: Sequence[ClipRef],
        loader: SegmentLoader,
        segments: int = DEFAULT_SEGMENTS,
        per_clip: int = 10,
        seed: int = 0,
    ) -> None:
        if segments < 1 or per_clip < 1:
            raise ValueError(f"need segments >= 1 and per_clip >= 1, got {segments} and {per_clip}")
        if not clips:
            raise CalibrationDataError("no video clips to calibrate on")
        self.order = order_clips(clips, seed)
        self.loader = loader
        self.segments = segments
        self.per_clip = per_clip
        self.seed = seed
        self.used: list[str] = []  # clips consumed by calibration, filled as batches() runs
        self.taken = 0  # calibration segments batches() gave (segments, or fewer from a small folder)
        self._next = 0  # index in self.order of the first clip not used for calibration

    def selection(self) -> str:
        """What decides which segments calibrate (recorded in the calibration cache)."""
        return f"segments={self.segments},per_clip={self.per_clip},seed={self.seed},clips={len(self.order)}"

    def batches(self) -> Iterator[SegmentBatch]:
        """`segments` calibration segments clip by clip, or all the clips give if fewer, down to MIN_SEGMENTS.

        CalibrationDataError (a ValueError) when the clips give fewer than MIN_SEGMENTS; `taken` says how many came.
        """
        self.used, self.taken, remaining, index = [], 0, self.segments, 0
        while remaining > 0 and index < len(self.order):
            ref = self.order[index]
            index += 1
            inputs = self._load(ref, self.per_clip, "test", None)
            if inputs is None:
                continue
            take = min(remaining, inputs.faces.shape[0])
            self.used.append(ref.name)
            remaining -= take
            self.taken += take
            yield SegmentBatch(inputs.faces[:take], inputs.spectrograms[:take], ref.name)
        self._next = index
        if remaining > 0 and self.taken < minimum_segments(self.segments):
            raise _too_few(len(self.order), self.taken, self.segments, self.per_clip, "")

    def skip_calibration(self, used: Sequence[str]) -> None:
        """Mark `used` clips as the calibration ones without loading them (ranges came from a cache)."""
        positions = [i for i, ref in enumerate(self.order) if ref.name in set(used)]
        self.used = [self.order[i].name for i in positions]
        self._next = max(positions, default=-1) + 1

    def holdout(self, count: int = DEFAULT_HOLDOUT) -> tuple[SegmentBatch, str]:
        """`count` segments not used for calibration -> (batch, where they came from). Call after batches()."""
        loaded: list[tuple[str, SegmentInputs]] = []
        for ref in self.order[self._next :]:
            if sum(len(i.faces) for _, i in loaded) >= count:
                break
            inputs = self._load(ref, self.per_clip, "test", None)
            if inputs is not None:
                loaded.append((ref.name, inputs))
        origin = f"{len(loaded)} clips not used for calibration"
        missing = count - sum(len(i.faces) for _, i in loaded)
        if missing > 0:  # too few clips: the calibration clips at other (seeded random) frames
            rng = np.random.default_rng(self.seed + 1)
            per_clip = max(1, -(-missing // max(1, len(self.used))))
            for ref in [r for r in self.order if r.name in self.used]:
                inputs = self._load(ref, per_clip, "train", rng)
                if inputs is not None:
                    loaded.append((ref.name, inputs))
            origin += f" + the {len(self.used)} calibration clips at other frames (too few clips)"
        if not loaded:
            raise ValueError("no held-out segments could be loaded")
        faces = np.concatenate([i.faces for _, i in loaded])[:count]  # [count, 3, 224, 224]
        specs = np.concatenate([i.spectrograms for _, i in loaded])[:count]  # [count, 1, 192, 120]
        return SegmentBatch(faces, specs, ",".join(name for name, _ in loaded)), origin

    def _load(self, ref: ClipRef, n: int, mode: Mode, rng: np.random.Generator | None) -> SegmentInputs | None:
        try:
            return self.loader(ref, n, mode, rng)
        except (EdgeEmotionError, OSError, ValueError) as exc:
            warnings.warn(f"calibration skips {ref.path}: {exc}", stacklevel=2)
            return None


def video_folder_source(
    folder: str | Path,
    config: PreprocessConfig,
    detector: FaceDetector | None = None,
    segments: int = DEFAULT_SEGMENTS,
    per_clip: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> SegmentSource:
    """A SegmentSource over a folder of videos; with `cache_dir` (a prepare cache) its cached boxes replace MTCNN.

    Without a cache an MTCNN detector is needed: pass one to share it, or one is made here.
    """
    per_clip = per_clip or config.n_segments
    clips = cached_clips(folder, cache_dir) if cache_dir is not None else list_videos(folder)
    check_enough_clips(len(clips), per_clip, segments, folder, cache_dir)
    if cache_dir is not None:
        return SegmentSource(clips, cached_loader(config, cache_dir), segments, per_clip, seed)
    detector = detector or FaceDetector(config.face)
    return SegmentSource(clips, detected_loader(config, detector), segments, per_clip, seed)
