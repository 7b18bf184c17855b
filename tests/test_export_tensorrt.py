"""TensorRT engines: header round trip, refusal of other TensorRT versions / GPUs, profile validation (no tensorrt
needed); a real build + parity when tensorrt and a CUDA GPU are present, skipped loudly otherwise."""

from __future__ import annotations

import struct

import pytest
from export_helpers import parity_batch

from edge_emotion.contract import ModelContract
from edge_emotion.errors import ArtifactError
from edge_emotion.export.tensorrt_build import (
    ENGINE_FORMAT,
    EngineHeader,
    Platform,
    ShapeProfile,
    check_platform,
    read_engine,
    write_engine,
)

H100 = Platform("10.9.0.34", "NVIDIA H100 80GB HBM3", (9, 0))


def _header(precision: str = "fp16") -> EngineHeader:
    profile = ShapeProfile(1, 10, 64)
    contract = ModelContract(precision=precision, io_dtype="float16" if precision == "fp16" else "float32")
    return EngineHeader(H100, precision, profile, contract.to_metadata(), 1 << 28)


def test_header_round_trip(tmp_path):
    path = tmp_path / "m.engine"
    header = _header()
    write_engine(path, header, b"\x00serialized-engine\xff")
    back, engine = read_engine(path)
    assert back == header and engine == b"\x00serialized-engine\xff"
    assert back.model_contract() == ModelContract(precision="fp16", io_dtype="float16")
    (length,) = struct.unpack("<I", path.read_bytes()[:4])  # Ultralytics-style layout: uint32 LE length + JSON
    assert path.read_bytes()[4 : 4 + length].decode().startswith("{") and ENGINE_FORMAT in path.read_text(
        errors="ignore"
    )


def test_bare_engine_is_refused(tmp_path):
    bare = tmp_path / "bare.engine"
    bare.write_bytes(b"ftrt" + bytes(2000))  # a plain serialized engine has no JSON header
    with pytest.raises(ArtifactError, match=r"bare\.engine: not an edge-emotion engine"):
        read_engine(bare)


def test_garbled_header_is_refused(tmp_path):
    bad = tmp_path / "bad.engine"
    bad.write_bytes(struct.pack("<I", 5) + b"{oops" + b"engine")
    with pytest.raises(ArtifactError, match="bad header"):
        read_engine(bad)


def test_other_tensorrt_version_is_refused():
    running = Platform("10.13.0.35", H100.gpu_name, H100.compute_capability)
    with pytest.raises(
        ArtifactError, match=r"built with TensorRT 10\.9\.0\.34, this is TensorRT 10\.13\.0\.35: rebuild"
    ):
        check_platform(_header(), running, "m.engine")


def test_other_gpu_architecture_is_refused():
    running = Platform(H100.trt_version, "NVIDIA GeForce RTX 4090", (8, 9))
    with pytest.raises(
        ArtifactError, match=r"built for NVIDIA H100 80GB HBM3 \(compute capability 9\.0\), this GPU is .*4090 \(8\.9\)"
    ):
        check_platform(_header(), running, "m.engine")


def test_same_architecture_other_board_warns():
    running = Platform(H100.trt_version, "NVIDIA H200", (9, 0))
    with pytest.warns(UserWarning, match="tuned on NVIDIA H100 80GB HBM3, running on NVIDIA H200"):
        check_platform(_header(), running, "m.engine")


def test_same_platform_passes():
    check_platform(_header(), H100, "m.engine")


@pytest.mark.parametrize("bounds", [(0, 1, 2), (2, 1, 4), (1, 8, 4)])
def test_profile_validation(bounds):
    with pytest.raises(ValueError, match="profile needs 1 <= min <= opt <= max"):
        ShapeProfile(*bounds)


def test_profile_needs_integers():
    with pytest.raises(TypeError, match="integers"):
        ShapeProfile(1, 2.5, 4)


def test_profile_parse_and_shapes():
    profile = ShapeProfile.parse("1, 16,128")
    assert profile == ShapeProfile(1, 16, 128)
    shapes = profile.shapes(ModelContract())
    assert shapes["face"] == ((1, 3, 224, 224), (16, 3, 224, 224), (128, 3, 224, 224))
    assert shapes["spectrogram"] == ((1, 1, 192, 120), (16, 1, 192, 120), (128, 1, 192, 120))
    with pytest.raises(ValueError, match="three integers"):
        ShapeProfile.parse("1,16")


def test_chunks_cover_any_segment_count():
    from edge_emotion.backends.tensorrt_backend import chunk_bounds

    assert chunk_bounds(130, 64) == [(0, 64), (64, 128), (128, 130)]
    assert chunk_bounds(1, 64) == [(0, 1)]
    assert chunk_bounds(0, 64) == []


@pytest.mark.tensorrt
def test_engine_build_and_parity(fresh_checkpoint, tmp_path):
    pytest.importorskip(
        "tensorrt", reason="tensorrt is not installed (NVIDIA's index is unreachable here): engine path unverified"
    )
    import torch

    if not torch.cuda.is_available():
        pytest.skip("tensorrt is installed but no CUDA GPU is visible: engine path unverified")
    from edge_emotion.backends import open_backend
    from edge_emotion.export.pipeline import export_engine_artifact, export_onnx_artifact

    batch = parity_batch()
    for precision in ("fp32", "fp16"):
        onnx_path = export_onnx_artifact(fresh_checkpoint, tmp_path / f"m.{precision}.onnx", batch, precision).path
        cache = tmp_path / "timing.cache"
        result = export_engine_artifact(
            onnx_path,
            tmp_path / f"m.{precision}.engine",
            fresh_checkpoint,
            batch,
            ShapeProfile(1, 8, 64),
            timing_cache=cache,
        )
        assert result.report.passed and cache.is_file()
        with open_backend(result.path) as engine:
            assert engine.infer(batch.faces[:1], batch.spectrograms[:1]).shape == (1, 6)


class _FakeTensorRT:
    """The slice of the tensorrt module build_engine uses, recording calls (checks our control flow, not TensorRT)."""

    __version__ = "10.9.0.34"

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            self.severity = severity

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 5

    class MemoryPoolType:
        WORKSPACE = 0

    def __init__(self):
        self.calls: list[tuple] = []
        fake = self

        class Cache:
            def __init__(self, data):
                self.data = data

            def serialize(self):
                return memoryview(b"timing:" + bytes(self.data))

        class Config:
            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("workspace", pool, size))

            def add_optimization_profile(self, profile):
                fake.calls.append(("profile", profile.shapes))

            def create_timing_cache(self, data):
                return Cache(data)

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache
                return True

            def get_timing_cache(self):
                return self.cache

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, lo, opt, hi):
                self.shapes[name] = (lo, opt, hi)

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls.append(("network flags", flags))
                return object()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return memoryview(b"ENGINE")

        class OnnxParser:
            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                fake.calls.append(("parse", path))
                return True

        self.Builder, self.OnnxParser = Builder, OnnxParser


def test_build_engine_control_flow_with_a_fake_tensorrt(fresh_checkpoint, tmp_path, monkeypatch):
    """Strongly typed flag, workspace, profile shapes, timing cache saved and reused, header + bytes written."""
    import sys

    from edge_emotion.checkpoint import load_checkpoint
    from edge_emotion.export import tensorrt_build
    from edge_emotion.export.pipeline import build_onnx

    onnx_path = tmp_path / "m.fp16.onnx"
    build_onnx(load_checkpoint(fresh_checkpoint), onnx_path, "fp16")
    fake = _FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(tensorrt_build, "current_platform", lambda trt, device="cuda:0": H100)
    cache = tmp_path / "trt.cache"
    header = tensorrt_build.build_engine(onnx_path, tmp_path / "m.engine", ShapeProfile(2, 8, 32), 1 << 26, cache)
    assert ("network flags", 1 << 5) in fake.calls and ("workspace", 0, 1 << 26) in fake.calls
    profile = next(c[1] for c in fake.calls if c[0] == "profile")
    assert profile["face"] == ((2, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    assert profile["spectrogram"] == ((2, 1, 192, 120), (8, 1, 192, 120), (32, 1, 192, 120))
    back, engine = read_engine(tmp_path / "m.engine")
    assert back == header and engine == b"ENGINE" and back.precision == "fp16"
    assert back.model_contract().io_dtype == "float16"
    assert cache.read_bytes() == b"timing:"  # saved after the build
    tensorrt_build.build_engine(onnx_path, tmp_path / "m2.engine", ShapeProfile(2, 8, 32), 1 << 26, cache)
    assert cache.read_bytes() == b"timing:timing:"  # loaded, grown, saved again
