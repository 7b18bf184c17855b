"""How a clip becomes model inputs: the parameters every checkpoint and exported artifact carries.

A leaf: it imports nothing of the package but its defaults, so the contract, checkpoints, the preprocessing
steps and the CLI can all read it without pulling in the code that does the work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edge_emotion import defaults

FOLLOWERS = ("cascade", "onet")  # FaceParams.follow: how a face is followed between full detections


@dataclass(frozen=True)
class FaceParams:
    """Everything that defines the face input; written into exported models."""

    size: int = 224  # crop side in pixels
    margin: float = 0.25  # extra context around the face box, as a fraction of its side
    # MTCNN's smallest face, in pixels of the frame as decoded: faces are detected at full resolution, so a
    # 40 px face is found in a 1920x1080 frame as in a 480x360 one
    min_face_size: int = defaults.MIN_FACE_SIZE
    # > 0: downscale frames to this longest side before detection (min_face_size then counts its pixels).
    # 0 (default): never. Downscaling to 320 px missed every face narrower than ~20 x longest side / 320 px
    # (a 55 px face in HD) and moved boxes by IoU 0.92 against full resolution; tracking pays for full resolution.
    detect_max_side: int = defaults.DETECT_MAX_SIDE
    # the full cascade on every k-th planned frame, and whenever a followed face is lost; each face is followed
    # from its last box in between (edge_emotion.detector.tracker, by `follow`)
    detect_every: int = defaults.DETECT_EVERY_PLANNED
    # how a face is followed between full detections (edge_emotion.detector.follow): "onet" (default), MTCNN's own
    # ONet near the last box: ~1.5 ms a follow, boxes at IoU ~0.93 of per-frame MTCNN's, within MTCNN's own
    # frame-to-frame jitter (0.90-0.91); "cascade", the cascade near the face: MTCNN's own boxes exactly, ~10 ms a
    # follow (benchmarks/README.md, Faces as tracks). Artifacts made before the choice existed read as "cascade".
    follow: str = defaults.FACE_FOLLOW
    # which detector made the boxes: a prepare cache or model made with another one is not mixed with this one's
    detector: str = "mtcnn-onnx-track/2"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # crop / 255, minus mean, over std
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.follow not in FOLLOWERS:
            raise ValueError(f"face follow {self.follow!r} is not one of: {', '.join(FOLLOWERS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaceParams:
        data = {"detect_every": data["detect_stride"], **data} if "detect_stride" in data else data  # before 0.2.0
        data = {"follow": "cascade", **data}  # written before `follow` existed: those followed with the cascade
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("mean", "std"):
            if key in fields:
                fields[key] = tuple(float(v) for v in fields[key])
        return cls(**fields)


@dataclass(frozen=True)
class SpectrogramParams:
    """Everything that defines the audio input; written into exported models."""

    sample_rate: int = 16_000
    window_s: float = 1.28  # d: audio window length
    jitter_s: float = 0.01  # b: train-time jitter of the window centre
    n_fft: int = 382
    hop_length: int = 171
    normalisation: str = "log-magnitude, standardised per spectrogram"

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def shape(self) -> tuple[int, int]:
        """(frequency bins, time frames)."""
        return self.n_fft // 2 + 1, 1 + self.window_samples // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpectrogramParams:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class PreprocessConfig:
    """How a clip becomes model inputs; travels inside checkpoints and exported models."""

    n_segments: int = 10
    face: FaceParams = field(default_factory=FaceParams)
    audio: SpectrogramParams = field(default_factory=SpectrogramParams)

    def to_dict(self) -> dict[str, Any]:
        return {"n_segments": self.n_segments, "face": self.face.to_dict(), "audio": self.audio.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        return cls(int(data["n_segments"]), FaceParams.from_dict(data["face"]), SpectrogramParams.from_dict(data["audio"]))
