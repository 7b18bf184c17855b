"""Building TensorRT engines: network flags, the builder's control flow over a recording stand-in for tensorrt,
and a real build + parity where tensorrt and a GPU are present (skipped loudly otherwise). tests/test_tensorrt_api.py
checks the TensorRT names we use against the real 11.4 bindings; tests/test_engine_file.py and test_cuda_runtime.py
the engine file and the CUDA wrapper."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from engine_helpers import H100, pnet_profiles
from export_helpers import parity_batch

from edge_emotion.backends.cuda_runtime import CudaError, load_cudart
from edge_emotion.backends.engine_file import (
    read_engine,
)
from edge_emotion.errors import ArtifactError, MissingDependencyError
from edge_emotion.toolchain.export.tensorrt_build import ShapeProfile, network_flags

ROOT = Path(__file__).resolve().parents[1]


def test_network_flags_for_tensorrt_10_and_11():
    class Flag:
        STRONGLY_TYPED = 1

    trt10 = type("trt", (), {"__version__": "10.13.0.35", "NetworkDefinitionCreationFlag": Flag})
    trt11 = type("trt", (), {"__version__": "11.4.0.106", "NetworkDefinitionCreationFlag": Flag})
    assert network_flags(trt10) == 1 << 1  # strongly typed: precision from the ONNX
    assert network_flags(trt11) == 0  # always strongly typed; the flag is deprecated and ignored


@pytest.mark.tensorrt
def test_engine_build_and_parity(fresh_checkpoint, tmp_path):
    pytest.importorskip(
        "tensorrt", reason="tensorrt is not installed (NVIDIA's index is unreachable here): engine path unverified"
    )
    try:
        load_cudart().set_device(0)
    except (CudaError, MissingDependencyError) as exc:
        pytest.skip(f"tensorrt is installed but no CUDA GPU is usable ({exc}): engine path unverified")
    from edge_emotion.backends import open_backend
    from edge_emotion.toolchain.export.pipeline import export_engine_artifact, export_onnx_artifact

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
    """The slice of the tensorrt module the builder uses, recording calls (checks our control flow, not TensorRT;
    the names themselves are checked against the real bindings in test_tensorrt_api.py)."""

    __version__ = "10.9.0.34"

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            self.severity = severity

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 5

    class MemoryPoolType:
        WORKSPACE = 0

    def __init__(self, inputs=("face", "spectrogram")):
        self.calls: list[tuple] = []
        fake = self

        class Cache:
            def __init__(self, data):
                self.data = data

            def serialize(self):
                return memoryview(b"timing:" + bytes(self.data))

        class Config:
            profiles = 0

            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("workspace", pool, size))

            def add_optimization_profile(self, profile):
                fake.calls.append(("profile", profile.shapes))
                self.profiles += 1
                return self.profiles - 1

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

        class Tensor:
            def __init__(self, name):
                self.name = name

        class Network:
            num_inputs = len(inputs)

            def get_input(self, index):
                return Tensor(inputs[index])

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls.append(("network flags", flags))
                return Network()

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


def _use_fake(monkeypatch, fake):
    from edge_emotion.toolchain.export import tensorrt_build

    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(tensorrt_build, "_target_platform", lambda trt, device: H100)
    return tensorrt_build


def test_build_engine_control_flow_with_a_fake_tensorrt(fresh_checkpoint, tmp_path, monkeypatch):
    """Strongly typed flag, workspace, profile shapes, timing cache saved and reused, header + bytes written."""
    from edge_emotion.toolchain.checkpoint import load_checkpoint
    from edge_emotion.toolchain.export.pipeline import build_onnx

    onnx_path = tmp_path / "m.fp16.onnx"
    build_onnx(load_checkpoint(fresh_checkpoint), onnx_path, "fp16")
    fake = _FakeTensorRT()
    tensorrt_build = _use_fake(monkeypatch, fake)
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


def test_build_with_several_profiles(tmp_path, monkeypatch):
    """A PNet-like net: one optimisation profile per H x W range, in order, all recorded in the header."""
    fake = _FakeTensorRT(inputs=("image",))
    tensorrt_build = _use_fake(monkeypatch, fake)
    profiles = [{"image": (r.min, r.opt, r.max)} for p in pnet_profiles() for r in p.values()]
    header = tensorrt_build.build_onnx_engine("pnet.onnx", tmp_path / "pnet.engine", profiles, "fp32", {"net": "pnet"})
    added = [c[1]["image"] for c in fake.calls if c[0] == "profile"]
    assert added == [
        ((1, 3, 12, 12), (1, 3, 60, 80), (4, 3, 120, 160)),
        ((1, 3, 120, 160), (1, 3, 240, 320), (4, 3, 360, 480)),
    ]
    assert read_engine(tmp_path / "pnet.engine")[0] == header and header.profiles == pnet_profiles()
    assert header.metadata == {"net": "pnet"}


def test_build_refuses_profiles_that_miss_an_input(tmp_path, monkeypatch):
    tensorrt_build = _use_fake(monkeypatch, _FakeTensorRT(inputs=("image", "scale")))
    with pytest.raises(
        ArtifactError, match=r"profile 0 gives \['image'\], the network's inputs are \['image', 'scale'\]"
    ):
        tensorrt_build.build_onnx_engine("n.onnx", tmp_path / "n.engine", [{"image": ((1,), (1,), (2,))}], "fp32")
    assert not (tmp_path / "n.engine").exists()


def test_build_refuses_bad_ranges_before_tensorrt(tmp_path):
    from edge_emotion.toolchain.export.tensorrt_build import build_onnx_engine

    with pytest.raises(ValueError, match="optimisation profile 1, input image: shape range needs"):
        build_onnx_engine(
            "n.onnx", tmp_path / "n.engine", [{"image": ((1,), (1,), (2,))}, {"image": ((3,), (2,), (1,))}], "fp32"
        )
    with pytest.raises(ValueError, match="at least one optimisation profile"):
        build_onnx_engine("n.onnx", tmp_path / "n.engine", [], "fp32")
