"""Engine-file values the TensorRT tests share (torch-free): a platform, a header, PNet-like shape profiles."""

from __future__ import annotations

from edge_emotion.backends.engine_file import EngineHeader, Platform, ShapeRange
from edge_emotion.contract import ModelContract
from edge_emotion.toolchain.export.tensorrt_build import ShapeProfile

H100 = Platform("10.9.0.34", "NVIDIA H100 80GB HBM3", (9, 0))


def engine_header(precision: str = "fp16") -> EngineHeader:
    contract = ModelContract(precision=precision, io_dtype="float16" if precision == "fp16" else "float32")
    profile = {name: ShapeRange.of(s) for name, s in ShapeProfile(1, 10, 64).shapes(contract).items()}
    return EngineHeader(H100, precision, (profile,), contract.to_metadata(), 1 << 28)


def pnet_profiles() -> tuple[dict[str, ShapeRange], ...]:
    """Two H x W ranges of a PNet-like input, as the MTCNN pyramid needs."""
    small = {"image": ShapeRange((1, 3, 12, 12), (1, 3, 60, 80), (4, 3, 120, 160))}
    large = {"image": ShapeRange((1, 3, 120, 160), (1, 3, 240, 320), (4, 3, 360, 480))}
    return small, large
