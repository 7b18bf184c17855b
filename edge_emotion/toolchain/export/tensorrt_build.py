"""TensorRT engines from ONNX files (the emotion branch, or any net such as MTCNN's PNet/RNet/ONet), header in front.

UNVERIFIED ON A GPU: tensorrt cannot be installed on the development machines
(see README). tests/test_tensorrt_api.py checks every TensorRT name, method and
keyword argument used here against the real TensorRT 11.4 Python bindings
(their pybind11 signatures); that verifies names and signatures, not behaviour.
The calls follow the TensorRT 10/11 API as Polygraphy's backend/trt/loader.py
uses it: Builder.create_network(flags), OnnxParser.parse_from_file,
IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE),
create_optimization_profile / set_shape / add_optimization_profile,
create_timing_cache / set_timing_cache / get_timing_cache().serialize(),
Builder.build_serialized_network. Everything around them (header, profiles,
refusal) is plain Python and unit tested without tensorrt.

Precision lives in the ONNX file, not in builder flags: the network is strongly
typed (NetworkDefinitionCreationFlag.STRONGLY_TYPED, which TensorRT 10 needs and
11 still accepts), so an FP16 ONNX gives an FP16 engine and a Q/DQ ONNX an INT8
one. TensorRT 11 removed the FP16/INT8 builder flags and implicit calibration;
this builder uses neither, on 10 or 11.

The file format (header, reading, platform check) is the runtime's:
edge_emotion/backends/engine_file.py. This module only builds and writes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_emotion import defaults
from edge_emotion.backends.cuda_runtime import cuda_device_index, load_cudart
from edge_emotion.backends.engine_file import (
    EngineHeader,
    Platform,
    Shape,
    ShapeRange,
    current_platform,
    encode_header,
    require_tensorrt,
)
from edge_emotion.contract import ModelContract
from edge_emotion.errors import ArtifactError
from edge_emotion.io.atomic import atomic_path

if TYPE_CHECKING:
    import tensorrt as trt  # type: ignore[import-not-found]  # annotations only; imported lazily at run time

DEFAULT_WORKSPACE = defaults.ENGINE_WORKSPACE_BYTES

#: one optimisation profile as callers write it: input name -> (min shape, opt shape, max shape)
ProfileShapes = Mapping[str, tuple[Shape, Shape, Shape]]


@dataclass(frozen=True)
class ShapeProfile:
    """The emotion branch's optimisation profile of the segment axis S: TensorRT tunes for `opt`, accepts min..max."""

    min: int = defaults.ENGINE_PROFILE[0]
    opt: int = defaults.ENGINE_PROFILE[1]
    max: int = defaults.ENGINE_PROFILE[2]

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

    def shapes(self, contract: ModelContract) -> dict[str, tuple[Shape, Shape, Shape]]:
        """{input name: (min shape, opt shape, max shape)} for IOptimizationProfile.set_shape."""
        out = {}
        for name, dims in contract.input_shapes().items():
            rest = tuple(int(d) for d in dims[1:])
            out[name] = ((self.min, *rest), (self.opt, *rest), (self.max, *rest))
        return out


DEFAULT_PROFILE = ShapeProfile()


def write_engine(path: str | Path, header: EngineHeader, engine: bytes) -> None:
    """Header (engine_file's layout) + engine bytes, written atomically: a killed build leaves no torn file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(encode_header(header))
        f.write(engine)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    profile: ShapeProfile = DEFAULT_PROFILE,
    workspace_bytes: int = DEFAULT_WORKSPACE,
    timing_cache: str | Path | None = None,
    device: str = "cuda:0",
) -> EngineHeader:
    """The emotion branch: its ONNX (contract in the metadata) -> an engine for S = min..max, contract in the header."""
    from edge_emotion.toolchain.export.onnx_export import read_contract

    contract = read_contract(onnx_path)
    return build_onnx_engine(
        onnx_path,
        engine_path,
        [profile.shapes(contract)],
        contract.precision,
        contract.to_metadata(),
        workspace_bytes,
        timing_cache,
        device,
    )


def build_onnx_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    profiles: Sequence[ProfileShapes],
    precision: str,
    metadata: Mapping[str, str] | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE,
    timing_cache: str | Path | None = None,
    device: str = "cuda:0",
) -> EngineHeader:
    """Any ONNX -> a strongly typed engine with one optimisation profile per entry of `profiles`, written atomically.

    Each profile names every network input with its (min, opt, max) shapes, e.g.
    PNet: [{"image": ((1, 3, 12, 12), (1, 3, 60, 80), (1, 3, 120, 160))},
    {"image": ((1, 3, 120, 160), (1, 3, 240, 320), (1, 3, 360, 480))}]; the
    runner picks the profile holding its input shapes. `precision` is what the
    ONNX holds (it decides the engine's precision; recorded in the header).
    The timing cache (if given) is loaded before the build and saved after it,
    so rebuilds (other profiles, other precision of the same net) skip most
    tactic timing.
    """
    ranges = _profile_ranges(profiles)
    trt = require_tensorrt()
    platform = _target_platform(trt, device)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(_parser_error(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(onnx_path, f"TensorRT's ONNX parser refused it: {errors}")
    _check_profile_inputs(network, ranges, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    for index, shapes in enumerate(ranges):
        profile = builder.create_optimization_profile()
        for name, r in shapes.items():
            profile.set_shape(name, r.min, r.opt, r.max)
        if config.add_optimization_profile(profile) != index:
            raise ArtifactError(onnx_path, f"TensorRT refused optimisation profile {index}: {_describe(shapes)}")
    _attach_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError(engine_path, "TensorRT failed to build the engine (see the TensorRT log above)")
    if timing_cache is not None:
        _save_timing_cache(config, timing_cache)
    header = EngineHeader(platform, precision, tuple(ranges), dict(metadata or {}), int(workspace_bytes))
    write_engine(engine_path, header, bytes(serialized))
    return header


def network_flags(trt) -> int:
    """STRONGLY_TYPED on TensorRT 10; none from 11 on, where every network is strongly typed (the flag is deprecated)."""
    if int(str(trt.__version__).split(".")[0]) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _parser_error(error: trt.ParserError) -> str:
    """One parser error as 'node NAME (OP): description' (the node tells which ONNX op TensorRT refused)."""
    return f"node {error.node_name() or '?'} ({error.node_operator() or '?'}): {error.desc()}"


def _profile_ranges(profiles: Sequence[ProfileShapes]) -> list[dict[str, ShapeRange]]:
    """Validated ShapeRanges per profile (ValueError naming the profile and input on a bad range)."""
    if not profiles:
        raise ValueError("an engine needs at least one optimisation profile")
    out = []
    for index, profile in enumerate(profiles):
        ranges = {}
        for name, shapes in profile.items():
            try:
                ranges[name] = ShapeRange.of(shapes)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"optimisation profile {index}, input {name}: {exc}") from exc
        out.append(ranges)
    return out


def _target_platform(trt, device: str) -> Platform:
    """Make GPU `device` current (TensorRT builds for the current device) and describe it for the header."""
    cuda = load_cudart()
    index = cuda_device_index(device)
    cuda.set_device(index)
    return current_platform(trt, cuda, index)


def _check_profile_inputs(
    network: trt.INetworkDefinition, ranges: list[dict[str, ShapeRange]], path: str | Path
) -> None:
    """Every profile must give exactly the network's inputs a range (TensorRT's own error is less clear)."""
    inputs = sorted(network.get_input(i).name for i in range(network.num_inputs))
    for index, shapes in enumerate(ranges):
        if sorted(shapes) != inputs:
            raise ArtifactError(
                path, f"optimisation profile {index} gives {sorted(shapes)}, the network's inputs are {inputs}"
            )


def _describe(shapes: Mapping[str, ShapeRange]) -> str:
    return ", ".join(f"{name} {r.describe()}" for name, r in shapes.items())


def _attach_timing_cache(config: trt.IBuilderConfig, path: str | Path | None) -> None:
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


def _save_timing_cache(config: trt.IBuilderConfig, path: str | Path) -> None:
    """Write the (possibly grown) timing cache atomically."""
    serialized = config.get_timing_cache().serialize()
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(bytes(serialized))
