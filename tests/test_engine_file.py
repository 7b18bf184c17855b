"""TensorRT engine files without a GPU: the header round trip, refusal of other TensorRT versions and GPUs,
shape ranges, profile selection and chunking."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from engine_helpers import H100, engine_header, pnet_profiles

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
from edge_emotion.errors import ArtifactError
from edge_emotion.toolchain.export.tensorrt_build import ShapeProfile, write_engine

ROOT = Path(__file__).resolve().parents[1]


def test_header_round_trip(tmp_path):
    path = tmp_path / "m.engine"
    header = engine_header()
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
    header = EngineHeader(H100, "fp32", pnet_profiles(), {"net": "pnet"}, 1 << 26)
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
        check_platform(engine_header(), running, "m.engine")


def test_other_gpu_architecture_is_refused():
    running = Platform(H100.trt_version, "NVIDIA GeForce RTX 4090", (8, 9))
    with pytest.raises(
        ArtifactError, match=r"built for NVIDIA H100 80GB HBM3 \(compute capability 9\.0\), this GPU is .*4090 \(8\.9\)"
    ):
        check_platform(engine_header(), running, "m.engine")


def test_same_architecture_other_board_warns():
    running = Platform(H100.trt_version, "NVIDIA H200", (9, 0))
    with pytest.warns(UserWarning, match="tuned on NVIDIA H100 80GB HBM3, running on NVIDIA H200"):
        check_platform(engine_header(), running, "m.engine")


def test_same_platform_passes():
    check_platform(engine_header(), H100, "m.engine")


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
    profiles = pnet_profiles()
    assert select_profile(profiles, {"image": (1, 3, 48, 64)}) == 0
    assert select_profile(profiles, {"image": (3, 3, 300, 400)}) == 1
    assert select_profile(profiles, {"image": (1, 3, 120, 160)}) == 0  # in both: the tighter (smaller max) one
    with pytest.raises(ValueError, match=r"fit no optimisation profile.*profile 1: image \[1, 3, 120, 160\]\.\."):
        select_profile(profiles, {"image": (1, 3, 600, 800)})
    with pytest.raises(ValueError, match="fit no optimisation profile"):
        select_profile(profiles, {"other": (1, 3, 48, 64)})


def test_batch_range_over_profiles():
    assert batch_range(pnet_profiles(), "image") == (1, 4)
    assert batch_range(engine_header().profiles, "face") == (1, 64)


def test_chunks_cover_any_segment_count():
    assert chunk_bounds(130, 64) == [(0, 64), (64, 128), (128, 130)]
    assert chunk_bounds(1, 64) == [(0, 1)]
    assert chunk_bounds(0, 64) == []
