"""Export -> load -> parity on the real fixture segments: FP32 and FP16 ONNX, contract round trip, refusal, CLI."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from export_helpers import parity_batch

from edge_emotion.backends import open_backend
from edge_emotion.contract import FACE_INPUT, OUTPUT, SPEC_INPUT, ModelContract
from edge_emotion.errors import ArtifactError
from edge_emotion.toolchain.checkpoint import config_hash, load_checkpoint
from edge_emotion.toolchain.export.fp16 import convert_to_fp16, io_dtypes
from edge_emotion.toolchain.export.onnx_export import DEFAULT_OPSET, read_contract
from edge_emotion.toolchain.export.parity import Tolerance, compare
from edge_emotion.toolchain.export.pipeline import export_onnx_artifact


@pytest.fixture(scope="module")
def exported(fresh_checkpoint, tmp_path_factory) -> dict[str, object]:
    """FP32 and FP16 artifacts of the fresh checkpoint, exported once for this module."""
    out = tmp_path_factory.mktemp("onnx")
    batch = parity_batch()
    return {
        precision: export_onnx_artifact(fresh_checkpoint, out / f"model.{precision}.onnx", batch, precision)
        for precision in ("fp32", "fp16")
    }


def test_fp32_parity_on_real_segments(exported):
    report = exported["fp32"].report
    assert report.passed and report.segments == 8
    assert report.max_abs_diff < 1e-5  # ONNX Runtime matches torch to ~1e-7; tolerance is 1e-4
    assert report.top1_agreement == 1.0


def test_fp16_parity_and_dtypes(exported):
    result = exported["fp16"]
    assert result.report.passed and result.report.max_abs_diff < 1e-2
    assert result.report.max_abs_diff > 0  # it really is computed in half
    proto = onnx.load(str(result.path))
    assert io_dtypes(proto) == {FACE_INPUT: "float16", SPEC_INPUT: "float16", OUTPUT: "float32"}
    contract = read_contract(result.path)
    assert (contract.precision, contract.io_dtype, contract.extra["output_dtype"]) == ("fp16", "float16", "float32")
    assert {"GlobalAveragePool", "Softmax"} <= set(contract.extra["fp32_ops"].split(","))
    assert {n.op_type for n in proto.graph.node if n.op_type == "BatchNormalization"} == set()  # folded at export


def test_contract_round_trip(exported, fresh_checkpoint):
    state = load_checkpoint(fresh_checkpoint)
    proto = onnx.load(str(exported["fp32"].path))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    contract = ModelContract.from_metadata(meta)
    assert contract.labels == tuple(state["labels"])
    assert contract.preprocess.to_dict() == state["preprocess"] and contract.n_segments == 4
    assert contract.config_hash == config_hash(state)
    assert contract.extra["opset"] == str(DEFAULT_OPSET)
    assert ModelContract.from_metadata(contract.to_metadata()) == contract


@pytest.fixture(scope="module")
def torch_reference(fresh_checkpoint) -> np.ndarray:
    """Torch probabilities of the 8 real parity segments: [8, 6]."""
    batch = parity_batch()
    with open_backend(fresh_checkpoint, "torch", device="cpu") as ref:
        return ref.infer(batch.faces, batch.spectrograms)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("segments", [1, 7, 64])
def test_dynamic_segment_axis(exported, torch_reference, precision, segments):
    batch = parity_batch()
    index = np.arange(segments) % len(batch)  # real segments, repeated; segments are independent in eval mode
    with open_backend(exported[precision].path) as onnx_backend:
        got = onnx_backend.infer(batch.faces[index], batch.spectrograms[index])  # [S, 6]
    expected = torch_reference[index]
    assert got.shape == (segments, 6) and got.dtype == np.float32
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-3)
    assert compare(expected, got, precision).passed


def test_refused_export_leaves_no_file(fresh_checkpoint, tmp_path):
    out = tmp_path / "model.fp16.onnx"
    with pytest.raises(ArtifactError, match="refused, parity check failed: max .diff"):
        export_onnx_artifact(fresh_checkpoint, out, parity_batch(), "fp16", tolerance=Tolerance(max_abs=0.0))
    assert list(tmp_path.iterdir()) == []  # neither the artifact nor a temporary file


def test_fp16_conversion_keeps_sensitive_ops_fp32(exported):
    fp32 = onnx.load(str(exported["fp32"].path))
    half = convert_to_fp16(fp32)
    types = {v.name: v.type.tensor_type.elem_type for v in [*half.graph.value_info, *half.graph.output]}
    for node in half.graph.node:
        if node.op_type in ("Softmax", "GlobalAveragePool", "Gemm"):
            assert types[node.output[0]] == onnx.TensorProto.FLOAT, node.name
        if node.op_type == "Conv":
            assert types[node.output[0]] == onnx.TensorProto.FLOAT16, node.name


def test_cli_export_and_check(fresh_checkpoint, tmp_path, hap_clip_path):
    from typer.testing import CliRunner

    from edge_emotion.cli import app

    out = tmp_path / "cli.onnx"
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(fresh_checkpoint), "--parity-data", str(hap_clip_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "parity onnxruntime fp32 vs torch fp32 on 4 real segments" in result.output and "PASS" in result.output
    assert read_contract(out).precision == "fp32"
    result = runner.invoke(
        app, ["check", str(out), "--against", str(fresh_checkpoint), "--parity-data", str(hap_clip_path)]
    )
    assert result.exit_code == 0 and "PASS" in result.output, result.output


def test_cli_refuses_int8_without_calibration(fresh_checkpoint):
    from typer.testing import CliRunner

    from edge_emotion.cli import app

    result = CliRunner().invoke(app, ["export", str(fresh_checkpoint), "--int8"])
    assert result.exit_code != 0 and "--calib" in result.output
