"""The backend interface: one open/infer/close for torch, ONNX Runtime and TensorRT; clear errors for bad artifacts."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from export_helpers import parity_batch

from edge_emotion.backends import backend_for, open_backend
from edge_emotion.backends.onnxruntime_backend import (
    CPU_EP,
    CUDA_EP,
    TRT_EP,
    OnnxRuntimeBackend,
    available_providers,
    wanted_providers,
)
from edge_emotion.errors import ArtifactError, MissingDependencyError
from edge_emotion.toolchain.checkpoint import build_branch, load_checkpoint
from edge_emotion.toolchain.export.onnx_export import ProbabilityBranch, example_inputs, export_onnx, set_metadata
from edge_emotion.toolchain.export.pipeline import checkpoint_contract


@pytest.fixture(scope="module")
def onnx_model(fresh_checkpoint, tmp_path_factory):
    """A contract-carrying FP32 ONNX of the fresh checkpoint (no parity: that is test_export_onnx's job)."""
    state = load_checkpoint(fresh_checkpoint)
    return export_onnx(build_branch(state), checkpoint_contract(state), tmp_path_factory.mktemp("b") / "m.onnx")


def test_all_backends_share_the_interface(fresh_checkpoint, onnx_model):
    batch = parity_batch()
    outputs = {}
    for path in (fresh_checkpoint, onnx_model):
        with open_backend(path, device="cpu") as backend:
            assert backend.contract.labels[3] == "HAP" and backend.precision == "fp32"
            outputs[backend.name] = backend.infer(batch.faces, batch.spectrograms)  # [8, 6]
    assert set(outputs) == {"torch", "onnxruntime"}
    np.testing.assert_allclose(outputs["torch"], outputs["onnxruntime"], atol=1e-5)


def test_backend_for_suffix():
    assert [backend_for(p) for p in ("a.pt", "b.onnx", "c.engine")] == ["torch", "onnxruntime", "tensorrt"]


def test_wrong_shape_is_refused(onnx_model):
    with (
        open_backend(onnx_model) as backend,
        pytest.raises(ValueError, match=r"face input has shape \[2, 3, 112, 112\]"),
    ):
        backend.infer(np.zeros((2, 3, 112, 112), np.float32), np.zeros((2, 1, 192, 120), np.float32))


def test_the_base_checks_inputs_for_every_backend():
    """A backend implements infer_impl only; Backend.infer refuses a bad shape before the implementation runs."""
    from edge_emotion.backends.base import Backend
    from edge_emotion.contract import ModelContract

    class Counting(Backend):
        calls = 0

        def infer_impl(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
            Counting.calls += 1
            return np.zeros((len(faces), 6), np.float32)

    backend = Counting(Path("none"), ModelContract())
    with pytest.raises(ValueError, match="3 faces but 2 spectrograms"):
        backend.infer(np.zeros((3, 3, 224, 224), np.float32), np.zeros((2, 1, 192, 120), np.float32))
    assert Counting.calls == 0
    assert backend.infer(np.zeros((2, 3, 224, 224), np.float32), np.zeros((2, 1, 192, 120), np.float32)).shape == (2, 6)
    assert Counting.calls == 1


@pytest.mark.parametrize("artifact", ["checkpoint", "onnx"])
def test_inputs_cast_to_model_dtype(artifact, fresh_checkpoint, onnx_model):
    """float16 faces and float64 spectrograms give the float32 call's numbers on the same (rounded) values.

    float64 -> float32 is exact for these inputs and float16 faces hold the float32 call's faces rounded to
    half, so the mixed call must equal the float32 call on those rounded faces to float noise; the untrained
    model's outputs move by ~1e-3 when the faces are wrong, far above the 1e-6 allowed.
    """
    batch = parity_batch()
    half_faces = batch.faces.astype(np.float16)  # [8, 3, 224, 224]
    with open_backend(fresh_checkpoint if artifact == "checkpoint" else onnx_model, device="cpu") as backend:
        mixed = backend.infer(half_faces, batch.spectrograms.astype(np.float64))  # [8, 6]
        same_values = backend.infer(half_faces.astype(np.float32), batch.spectrograms)  # [8, 6]
        full = backend.infer(batch.faces, batch.spectrograms)  # [8, 6]
    assert mixed.dtype == np.float32 and mixed.shape == (8, 6)
    np.testing.assert_allclose(mixed, same_values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(mixed, full, rtol=0, atol=1e-4)  # half-precision faces move it by float noise only


def test_corrupt_onnx_names_the_file(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage, not a protobuf" * 10)
    with pytest.raises(ArtifactError, match=r"corrupt\.onnx: not a loadable ONNX model"):
        open_backend(bad)


def test_truncated_onnx_names_the_file(onnx_model, tmp_path):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(onnx_model.read_bytes()[:5000])
    with pytest.raises(ArtifactError, match=r"cut\.onnx: not a loadable ONNX model"):
        open_backend(cut)


def test_onnx_without_contract_says_what_is_missing(fresh_checkpoint, tmp_path):
    plain = tmp_path / "plain.onnx"
    model = ProbabilityBranch(build_branch(load_checkpoint(fresh_checkpoint)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example_inputs(checkpoint_contract(load_checkpoint(fresh_checkpoint))),
            str(plain),
            dynamo=False,
            input_names=["face", "spectrogram"],
            output_names=["probabilities"],
        )
    with pytest.raises(
        ArtifactError, match=r"plain\.onnx: no edge-emotion contract \(missing metadata: labels, n_segments"
    ):
        open_backend(plain)


def test_onnx_with_broken_contract(onnx_model, tmp_path):
    proto = onnx.load(str(onnx_model))
    set_metadata(proto, {"edge_emotion.precision": "int4"})
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    with pytest.raises(ArtifactError, match=r"broken\.onnx: contract precision must be one of"):
        open_backend(broken)


@pytest.mark.parametrize(
    ("key", "change", "message"),
    [
        ("edge_emotion.labels", lambda v: json.dumps(json.loads(v)[:5]), "probabilities axis 1 is 6 in the graph, 5 in the contract"),
        ("edge_emotion.preprocess", lambda v: v.replace('"size": 224', '"size": 112'), "face axis 2 is 224 in the graph, 112"),
        ("edge_emotion.preprocess", lambda v: v.replace('"n_fft": 382', '"n_fft": 510'), "spectrogram axis 2 is 192 in the graph, 256"),
    ],
)
def test_onnx_whose_contract_does_not_match_its_graph(onnx_model, tmp_path, key, change, message):
    proto = onnx.load(str(onnx_model))
    meta = {p.key: p.value for p in proto.metadata_props}
    set_metadata(proto, {key: change(meta[key])})
    tampered = tmp_path / "tampered.onnx"
    onnx.save(proto, str(tampered))
    with pytest.raises(ArtifactError, match=r"tampered\.onnx: the graph does not match its contract") as info:
        open_backend(tampered)
    assert message in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="ONNX file not found"):
        OnnxRuntimeBackend(tmp_path / "nope.onnx")


def test_provider_choice_is_pure():
    assert wanted_providers("auto", "cpu") == [CPU_EP]
    assert wanted_providers("auto", "auto") == [CUDA_EP, CPU_EP]
    assert wanted_providers("tensorrt", "cuda:1") == [TRT_EP, CUDA_EP, CPU_EP]
    with pytest.raises(ValueError, match="provider must be one of"):
        wanted_providers("rocm", "auto")


def test_auto_falls_back_to_cpu_quietly():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert available_providers([CUDA_EP, CPU_EP], [CPU_EP]) == [CPU_EP]


def test_requested_gpu_provider_falls_back_with_warning(onnx_model):
    import onnxruntime

    if CUDA_EP in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: no fallback to observe")
    with pytest.warns(UserWarning, match="CUDAExecutionProvider not available.*Falling back"):
        backend = OnnxRuntimeBackend(onnx_model, provider="cuda")
    assert backend.providers == [CPU_EP]


def test_tensorrt_backend_without_tensorrt(tmp_path, onnx_model):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed: see test_export_tensorrt.py for the real engine")
    except ImportError:
        pass
    from edge_emotion.backends.engine_file import EngineHeader, Platform, ShapeRange
    from edge_emotion.toolchain.export.onnx_export import read_contract
    from edge_emotion.toolchain.export.tensorrt_build import ShapeProfile, write_engine

    contract = read_contract(onnx_model)
    profile = {name: ShapeRange.of(shapes) for name, shapes in ShapeProfile().shapes(contract).items()}
    header = EngineHeader(
        Platform("10.9.0", "NVIDIA H100", (9, 0)), "fp32", (profile,), contract.to_metadata(), 1 << 30
    )
    engine = tmp_path / "m.engine"
    write_engine(engine, header, b"engine-bytes")
    with pytest.raises(MissingDependencyError, match="tensorrt is not installed: pip install"):
        open_backend(engine)
