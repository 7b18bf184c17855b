"""TensorRT engines from the exported ONNX (FP32, FP16 or Q/DQ INT8), with a JSON header in front.

UNVERIFIED ON A GPU: tensorrt cannot be installed on the development machines
(see README). The calls below follow the TensorRT 10/11 Python API as the
TensorRT repository documents it (python/src/infer/pyCore.cpp bindings,
Polygraphy's backend/trt/loader.py and config.py): Builder.create_network(flags),
OnnxParser.parse_from_file, IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE),
create_optimization_profile / set_shape / add_optimization_profile,
create_timing_cache / set_timing_cache / get_timing_cache().serialize(),
Builder.build_serialized_network. Everything around them (header, refusal,
profile) is plain Python and unit tested without tensorrt.

Precision lives in the ONNX file, not in builder flags: the network is strongly
typed (TensorRT 10: NetworkDefinitionCreationFlag.STRONGLY_TYPED; TensorRT 11:
always, the flag is deprecated and ignored), so an FP16 ONNX gives an FP16
engine and a Q/DQ ONNX an INT8 one; no FP16/INT8 builder flags, no implicit
calibrator (removed in TensorRT 11).

Engine file layout (as Ultralytics does): 4-byte little-endian header length,
the UTF-8 JSON header, then the serialized engine. The header holds the
TensorRT version, GPU name and compute capability the engine was built for,
precision, the shape profile of S and the model contract (metadata map).
"""

from __future__ import annotations

import json
import struct
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from edge_emotion.atomic import atomic_path
from edge_emotion.contract import ModelContract
from edge_emotion.deps import require
from edge_emotion.errors import ArtifactError

ENGINE_FORMAT = "edge-emotion-engine/1"
MAX_HEADER_BYTES = 1 << 20  # a header is a few KB; a larger length means this is not our file
DEFAULT_WORKSPACE = 1 << 30  # 1 GiB: plenty for a 0.4 M-parameter net, small enough for Jetson-class devices
MIN_TRT_MAJOR = 10  # STRONGLY_TYPED, the tensor API (set_input_shape / execute_async_v3)


@dataclass(frozen=True)
class ShapeProfile:
    """The optimisation profile of the segment axis S: TensorRT tunes for `opt` and accepts min..max."""

    min: int = 1
    opt: int = 10
    max: int = 64

    def __post_init__(self) -> None:
        if not (isinstance(self.min, int) and isinstance(self.opt, int) and isinstance(self.max, int)):
            raise TypeError(f"profile bounds must be integers, got {self}")
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(
                f"profile needs 1 <= min <= opt <= max, got min={self.min}, opt={self.opt}, max={self.max}"
            )

    @classmethod
    def parse(cls, text: str) -> ShapeProfile:
        """'min,opt,max' (e.g. '1,10,64') -> ShapeProfile; ValueError saying what is wrong."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"profile must be three integers min,opt,max, got {text!r}")
        return cls(*(int(p) for p in parts))

    def shapes(self, contract: ModelContract) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """{input name: (min shape, opt shape, max shape)} for IOptimizationProfile.set_shape."""
        out = {}
        for name, dims in contract.input_shapes().items():
            rest = tuple(int(d) for d in dims[1:])
            out[name] = ((self.min, *rest), (self.opt, *rest), (self.max, *rest))
        return out


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
    profile: ShapeProfile
    contract: dict[str, str]  # ModelContract.to_metadata()
    workspace_bytes: int = DEFAULT_WORKSPACE
    format: str = ENGINE_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EngineHeader:
        data = json.loads(text)
        if data.get("format") != ENGINE_FORMAT:
            raise ValueError(f"header format is {data.get('format')!r}, expected {ENGINE_FORMAT!r}")
        platform = data["platform"]
        return cls(
            platform=Platform(platform["trt_version"], platform["gpu_name"], tuple(platform["compute_capability"])),
            precision=data["precision"],
            profile=ShapeProfile(**data["profile"]),
            contract=dict(data["contract"]),
            workspace_bytes=int(data["workspace_bytes"]),
        )

    def model_contract(self) -> ModelContract:
        return ModelContract.from_metadata(self.contract)


def write_engine(path: str | Path, header: EngineHeader, engine: bytes) -> None:
    """Header length (uint32 LE) + JSON header + engine bytes, written atomically."""
    blob = header.to_json().encode("utf-8")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<I", len(blob)))
        f.write(blob)
        f.write(engine)


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
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
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


def current_platform(trt: ModuleType, device: str = "cuda:0") -> Platform:
    """The running TensorRT version and CUDA GPU (via torch, which is installed anyway)."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("TensorRT needs a CUDA GPU and none is visible to torch")
    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return Platform(trt.__version__, torch.cuda.get_device_name(index), (int(major), int(minor)))


def require_tensorrt() -> ModuleType:
    """Import tensorrt (>= 10) lazily, with the install hint when it is missing."""
    trt = require("tensorrt")
    major = int(trt.__version__.split(".")[0])
    if major < MIN_TRT_MAJOR:
        raise RuntimeError(
            f"TensorRT {trt.__version__} is too old: strongly typed networks need TensorRT >= {MIN_TRT_MAJOR}"
        )
    return trt


DEFAULT_PROFILE = ShapeProfile()


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    profile: ShapeProfile = DEFAULT_PROFILE,
    workspace_bytes: int = DEFAULT_WORKSPACE,
    timing_cache: str | Path | None = None,
    device: str = "cuda:0",
) -> EngineHeader:
    """Parse the ONNX, build a strongly typed engine for profile S = min..max, write header + engine atomically.

    The timing cache (if given) is loaded before the build and saved after it, so
    rebuilds (other profile, other precision of the same net) skip most tactic timing.
    """
    from edge_emotion.export.onnx_export import read_contract

    trt = require_tensorrt()
    contract = read_contract(onnx_path)
    platform = current_platform(trt, device)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(onnx_path, f"TensorRT's ONNX parser refused it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    trt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.shapes(contract).items():
        trt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(trt_profile)
    _attach_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError(engine_path, "TensorRT failed to build the engine (see the TensorRT log above)")
    if timing_cache is not None:
        _save_timing_cache(config, timing_cache)
    header = EngineHeader(platform, contract.precision, profile, contract.to_metadata(), int(workspace_bytes))
    write_engine(engine_path, header, bytes(serialized))
    return header


def _attach_timing_cache(config, path: str | Path | None) -> None:
    """Load the timing cache file (or start empty) and attach it; a cache from another setup starts empty."""
    data = Path(path).read_bytes() if path is not None and Path(path).is_file() else b""
    try:
        cache = config.create_timing_cache(data)
        attached = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)  # False: mismatch
        reason = "built by another TensorRT or GPU"
    except (RuntimeError, TypeError) as exc:
        attached, reason = False, str(exc)
    if not attached:
        warnings.warn(f"{path}: timing cache not usable here ({reason}); timing from scratch", stacklevel=3)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _save_timing_cache(config, path: str | Path) -> None:
    """Write the (possibly grown) timing cache atomically."""
    serialized = config.get_timing_cache().serialize()
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(bytes(serialized))
