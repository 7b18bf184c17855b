"""TensorRT engines without a GPU: the engine file (header round trip, refusal of other TensorRT versions / GPUs),
shape ranges and profile selection, chunking, libcudart loading and its errors, the builder's control flow over a
recording stand-in for tensorrt; a real build + parity (and a CUDA round trip) where tensorrt and a GPU are present,
skipped loudly otherwise. tests/test_tensorrt_api.py checks the TensorRT names we use against the real 11.4 bindings."""

from __future__ import annotations

import ast
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from export_helpers import parity_batch

from edge_emotion.backends.cuda_runtime import CudaError, cuda_device_index, load_cudart
from edge_emotion.backends.engine_file import (
    ENGINE_FORMAT,
    EngineHeader,
    Platform,
    ShapeRange,
    check_platform,
    read_engine,
)
from edge_emotion.backends.tensorrt_backend import batch_range, chunk_bounds, select_profile
from edge_emotion.contract import ModelContract
from edge_emotion.errors import ArtifactError, MissingDependencyError
from edge_emotion.toolchain.export.tensorrt_build import ShapeProfile, network_flags, write_engine

ROOT = Path(__file__).resolve().parents[1]
H100 = Platform("10.9.0.34", "NVIDIA H100 80GB HBM3", (9, 0))


def _header(precision: str = "fp16") -> EngineHeader:
    contract = ModelContract(precision=precision, io_dtype="float16" if precision == "fp16" else "float32")
    profile = {name: ShapeRange.of(s) for name, s in ShapeProfile(1, 10, 64).shapes(contract).items()}
    return EngineHeader(H100, precision, (profile,), contract.to_metadata(), 1 << 28)


def _pnet_profiles() -> tuple[dict[str, ShapeRange], ...]:
    """Two H x W ranges of a PNet-like input, as the MTCNN pyramid needs."""
    small = {"image": ShapeRange((1, 3, 12, 12), (1, 3, 60, 80), (4, 3, 120, 160))}
    large = {"image": ShapeRange((1, 3, 120, 160), (1, 3, 240, 320), (4, 3, 360, 480))}
    return small, large


def test_header_round_trip(tmp_path):
    path = tmp_path / "m.engine"
    header = _header()
    write_engine(path, header, b"\x00serialized-engine\xff")
    back, engine = read_engine(path)
    assert back == header and engine == b"\x00serialized-engine\xff"
    assert back.model_contract() == ModelContract(precision="fp16", io_dtype="float16")
    assert back.profiles[0]["face"] == ShapeRange((1, 3, 224, 224), (10, 3, 224, 224), (64, 3, 224, 224))
    (length,) = struct.unpack("<I", path.read_bytes()[:4])  # Ultralytics-style layout: uint32 LE length + JSON
    assert path.read_bytes()[4 : 4 + length].decode().startswith("{") and ENGINE_FORMAT in path.read_text(
        errors="ignore"
    )


def test_header_round_trip_several_profiles_and_free_metadata(tmp_path):
    header = EngineHeader(H100, "fp32", _pnet_profiles(), {"net": "pnet"}, 1 << 26)
    write_engine(tmp_path / "pnet.engine", header, b"E")
    back, _ = read_engine(tmp_path / "pnet.engine")
    assert back == header and back.profiles[1]["image"].max == (4, 3, 360, 480)
    with pytest.raises(ValueError, match="labels"):  # no contract: not a branch engine
        back.model_contract()


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


def test_header_of_the_old_format_is_refused(tmp_path):
    old = b'{"format": "edge-emotion-engine/1", "profile": {"min": 1, "opt": 10, "max": 64}}'
    (tmp_path / "old.engine").write_bytes(struct.pack("<I", len(old)) + old + b"E")
    with pytest.raises(ArtifactError, match="edge-emotion-engine/1.*expected 'edge-emotion-engine/2'"):
        read_engine(tmp_path / "old.engine")


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


def test_shape_range_validation_and_contains():
    r = ShapeRange((1, 3, 12, 12), (1, 3, 60, 80), (4, 3, 120, 160))
    assert r.contains((2, 3, 12, 160)) and not r.contains((2, 3, 11, 80)) and not r.contains((2, 3, 60))
    with pytest.raises(ValueError, match=r"0 <= min <= opt <= max on every axis, got \[1, 3, 12\]\.\.\[4, 3, 9\]"):
        ShapeRange((1, 3, 12), (1, 3, 12), (4, 3, 9))
    with pytest.raises(ValueError, match="same rank"):
        ShapeRange((1, 3), (1, 3), (1, 3, 4))
    with pytest.raises(TypeError, match="tuples of integers"):
        ShapeRange((1, 3.0), (1, 3), (1, 3))


def test_profile_selection():
    profiles = _pnet_profiles()
    assert select_profile(profiles, {"image": (1, 3, 48, 64)}) == 0
    assert select_profile(profiles, {"image": (3, 3, 300, 400)}) == 1
    assert select_profile(profiles, {"image": (1, 3, 120, 160)}) == 0  # in both: the tighter (smaller max) one
    with pytest.raises(ValueError, match=r"fit no optimisation profile.*profile 1: image \[1, 3, 120, 160\]\.\."):
        select_profile(profiles, {"image": (1, 3, 600, 800)})
    with pytest.raises(ValueError, match="fit no optimisation profile"):
        select_profile(profiles, {"other": (1, 3, 48, 64)})


def test_batch_range_over_profiles():
    assert batch_range(_pnet_profiles(), "image") == (1, 4)
    assert batch_range(_header().profiles, "face") == (1, 64)


def test_chunks_cover_any_segment_count():
    assert chunk_bounds(130, 64) == [(0, 64), (64, 128), (128, 130)]
    assert chunk_bounds(1, 64) == [(0, 1)]
    assert chunk_bounds(0, 64) == []


def test_device_strings():
    assert [cuda_device_index(d) for d in ("auto", "cuda", "cuda:0", "cuda:1")] == [0, 0, 0, 1]
    for bad in ("cpu", "cuda:x", "gpu1"):
        with pytest.raises(CudaError, match="a TensorRT engine runs on a CUDA GPU"):
            cuda_device_index(bad)


def test_open_backend_passes_the_device_to_tensorrt(tmp_path):
    """--device reaches the engine backend (it used to be dropped: always GPU 0); cpu is refused in one line."""
    from edge_emotion.backends import open_backend

    write_engine(tmp_path / "m.engine", _header(), b"E")
    with pytest.raises(CudaError, match="device 'cpu': a TensorRT engine runs on a CUDA GPU"):
        open_backend(tmp_path / "m.engine", device="cpu")


def test_missing_libcudart_is_one_clear_error():
    with pytest.raises(
        MissingDependencyError, match=r"libcudart \(the CUDA runtime\) not found; tried /nowhere/libcudart"
    ):
        load_cudart(["/nowhere/libcudart.so.99"])


def _cudart():
    try:
        return load_cudart()
    except MissingDependencyError as exc:
        pytest.skip(f"no libcudart on this machine ({exc}): CUDA wrapper unexercised")


def test_libcudart_without_a_gpu_is_one_clear_error():
    """The real libcudart (pip's nvidia wheel or the toolkit) loads, binds every call, and says why there is no GPU."""
    cuda = _cudart()
    try:
        count = cuda.device_count()
    except CudaError as exc:
        assert "cudaGetDeviceCount (is a GPU visible?) failed" in str(exc) and cuda.source in str(exc)
        with pytest.raises(CudaError, match="cudaGetDeviceCount"):
            cuda.set_device(0)
        return
    with pytest.raises(CudaError, match=rf"device cuda:{count} does not exist: {count} CUDA device"):
        cuda.set_device(count)


@pytest.mark.gpu
def test_cuda_round_trip_on_a_gpu():
    """Host -> device -> host through our ctypes wrapper: the bytes come back."""
    from edge_emotion.backends.cuda_runtime import DeviceBuffer

    cuda = _cudart()
    try:
        cuda.set_device(0)
    except CudaError as exc:
        pytest.skip(f"no usable CUDA GPU ({exc})")
    assert cuda.device_name(0) and cuda.compute_capability(0)[0] >= 3
    stream = cuda.stream_create()
    buffer = DeviceBuffer(cuda)
    data = np.arange(1000, dtype=np.float32).reshape(10, 100)  # [10, 100]
    back = np.empty_like(data)
    cuda.copy_to_device(buffer.reserve(data.nbytes), data, stream)
    cuda.copy_to_host(back, buffer.ptr, stream)
    cuda.stream_synchronize(stream)
    buffer.free()
    cuda.stream_destroy(stream)
    np.testing.assert_array_equal(back, data)


def test_engine_runtime_imports_no_torch():
    """Scoring an engine must not pay for torch: our runtime modules add no torch import to what they depend on."""
    code = (
        "import sys\n"
        "import edge_emotion.contract\n"
        "before = 'torch' in sys.modules\n"
        "import edge_emotion.backends.tensorrt_backend, edge_emotion.backends.engine_file\n"
        "import edge_emotion.backends.cuda_runtime\n"
        "print(before, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    before, after = result.stdout.split()
    for module in ("tensorrt_backend", "engine_file", "cuda_runtime"):  # no torch import anywhere in them, lazy or not
        tree = ast.parse((ROOT / "edge_emotion" / "backends" / f"{module}.py").read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if m.split(".")[0] == "torch"], module
    assert before == "False", "edge_emotion.contract imports torch: the runtime's leaf must not (a layering bug)"
    assert after == "False", "the TensorRT runtime modules import torch"


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
    profiles = [{"image": (r.min, r.opt, r.max)} for p in _pnet_profiles() for r in p.values()]
    header = tensorrt_build.build_onnx_engine("pnet.onnx", tmp_path / "pnet.engine", profiles, "fp32", {"net": "pnet"})
    added = [c[1]["image"] for c in fake.calls if c[0] == "profile"]
    assert added == [
        ((1, 3, 12, 12), (1, 3, 60, 80), (4, 3, 120, 160)),
        ((1, 3, 120, 160), (1, 3, 240, 320), (4, 3, 360, 480)),
    ]
    assert read_engine(tmp_path / "pnet.engine")[0] == header and header.profiles == _pnet_profiles()
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
