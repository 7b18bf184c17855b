"""The edge-emotion engine file: a JSON header in front of a serialized TensorRT engine, and the checks made on it.

Runtime side of the engine format (no torch, no builder): the builder in
export/tensorrt_build.py writes these files through `encode_header`; scorers read
them with `read_engine` and refuse an engine built for another TensorRT version
or GPU (`check_platform`) before TensorRT ever deserializes it.

Layout (as Ultralytics does): 4-byte little-endian header length, the UTF-8 JSON
header, then the serialized engine. The header holds the TensorRT version, GPU
name and compute capability the engine was built for, its precision, the shape
ranges of every optimisation profile (in the engine's profile order) and free
metadata (the model contract for the emotion branch).
"""

from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from edge_emotion.contract import ModelContract
from edge_emotion.deps import require
from edge_emotion.errors import ArtifactError, MissingDependencyError

if TYPE_CHECKING:
    from edge_emotion.backends.cuda_runtime import CudaRuntime

ENGINE_FORMAT = "edge-emotion-engine/2"  # /2: per-profile shape ranges of every input (was: one S range)
MAX_HEADER_BYTES = 1 << 20  # a header is a few KB; a larger length means this is not our file
MIN_TRT_MAJOR = 10  # STRONGLY_TYPED, the name-based tensor API (set_input_shape / execute_async_v3)

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeRange:
    """One input's shapes in one optimisation profile: TensorRT tunes for `opt` and accepts min..max per axis."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        shapes = (self.min, self.opt, self.max)
        if not all(isinstance(s, tuple) and all(isinstance(d, int) for d in s) for s in shapes):
            raise TypeError(f"shape range bounds must be tuples of integers, got {self}")
        if len({len(s) for s in shapes}) != 1:
            raise ValueError(f"min, opt and max must have the same rank, got {self.min}, {self.opt}, {self.max}")
        if not all(0 <= lo <= opt <= hi for lo, opt, hi in zip(*shapes)):
            raise ValueError(f"shape range needs 0 <= min <= opt <= max on every axis, got {self.describe()}")

    def contains(self, shape: Shape) -> bool:
        """Whether an input of `shape` fits this range (same rank, min <= d <= max on every axis)."""
        return len(shape) == len(self.min) and all(lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max))

    def describe(self) -> str:
        return f"{list(self.min)}..{list(self.max)} (opt {list(self.opt)})"

    @classmethod
    def of(cls, shapes: tuple[Shape, Shape, Shape]) -> ShapeRange:
        """(min shape, opt shape, max shape), any int sequences -> ShapeRange."""
        lo, opt, hi = (tuple(int(d) for d in s) for s in shapes)
        return cls(lo, opt, hi)


#: one optimisation profile: input name -> its shape range
Profile = Mapping[str, ShapeRange]


@dataclass(frozen=True)
class Platform:
    """What an engine is bound to: TensorRT version and GPU."""

    trt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]


@dataclass(frozen=True)
class EngineHeader:
    """Everything a scorer needs to know before deserializing the engine bytes."""

    platform: Platform
    precision: str
    profiles: tuple[dict[str, ShapeRange], ...]  # in the engine's optimisation-profile order
    metadata: dict[str, str]  # ModelContract.to_metadata() for the emotion branch; free for other nets
    workspace_bytes: int
    format: str = ENGINE_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EngineHeader:
        data = json.loads(text)
        if data.get("format") != ENGINE_FORMAT:
            raise ValueError(f"header format is {data.get('format')!r}, expected {ENGINE_FORMAT!r}")
        platform = data["platform"]
        profiles = tuple(
            {name: ShapeRange.of((r["min"], r["opt"], r["max"])) for name, r in profile.items()}
            for profile in data["profiles"]
        )
        return cls(
            platform=Platform(platform["trt_version"], platform["gpu_name"], tuple(platform["compute_capability"])),
            precision=data["precision"],
            profiles=profiles,
            metadata=dict(data["metadata"]),
            workspace_bytes=int(data["workspace_bytes"]),
        )

    def model_contract(self) -> ModelContract:
        """The emotion branch's contract stored in `metadata` (ValueError if this engine holds none)."""
        return ModelContract.from_metadata(self.metadata)


def encode_header(header: EngineHeader) -> bytes:
    """The bytes in front of the engine: header length (uint32 LE) + UTF-8 JSON header."""
    blob = header.to_json().encode("utf-8")
    return struct.pack("<I", len(blob)) + blob


def read_engine(path: str | Path) -> tuple[EngineHeader, bytes]:
    """(header, engine bytes); ArtifactError if the file has no edge-emotion header (e.g. a bare trtexec engine)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "engine file not found")
    data = path.read_bytes()
    if len(data) < 4:
        raise ArtifactError(path, "not an edge-emotion engine (file shorter than its header length)")
    (length,) = struct.unpack("<I", data[:4])
    if length > min(MAX_HEADER_BYTES, len(data) - 4):
        raise ArtifactError(
            path,
            "not an edge-emotion engine (no JSON header; a bare TensorRT engine? rebuild with `edge-emotion export --format engine`)",
        )
    try:
        header = EngineHeader.from_json(data[4 : 4 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(path, f"not an edge-emotion engine (bad header: {exc})") from exc
    return header, data[4 + length :]


def check_platform(header: EngineHeader, running: Platform, path: str | Path) -> None:
    """Refuse an engine built for another TensorRT version or GPU architecture; warn on another GPU model.

    TensorRT engines are not portable across TensorRT versions (deserialization
    fails or misbehaves) nor across compute capabilities (kernels are compiled
    for one); the same compute capability on a different board runs but was
    tuned for the other one.
    """
    built = header.platform
    if built.trt_version != running.trt_version:
        raise ArtifactError(
            path,
            f"engine built with TensorRT {built.trt_version}, this is TensorRT {running.trt_version}: "
            "rebuild it here (`edge-emotion export --format engine`) from the ONNX",
        )
    if tuple(built.compute_capability) != tuple(running.compute_capability):
        raise ArtifactError(
            path,
            f"engine built for {built.gpu_name} (compute capability {_cc(built)}), this GPU is {running.gpu_name} "
            f"({_cc(running)}): rebuild it on this GPU",
        )
    if built.gpu_name != running.gpu_name:
        warnings.warn(
            f"{path}: engine tuned on {built.gpu_name}, running on {running.gpu_name} (same architecture)", stacklevel=2
        )


def _cc(p: Platform) -> str:
    return ".".join(map(str, p.compute_capability))


def current_platform(trt: ModuleType, cuda: CudaRuntime, device: int) -> Platform:
    """The running TensorRT version and CUDA GPU `device` (read through libcudart, no torch)."""
    return Platform(trt.__version__, cuda.device_name(device), cuda.compute_capability(device))


def require_tensorrt() -> ModuleType:
    """Import `tensorrt` (>= 10) lazily, with the install hint when it is missing or too old."""
    trt = require("tensorrt")
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TRT_MAJOR:
        raise MissingDependencyError(
            f"TensorRT {trt.__version__} is too old: strongly typed networks need TensorRT >= {MIN_TRT_MAJOR} "
            "(pip install 'edge-emotion[trt]')"
        )
    return trt
