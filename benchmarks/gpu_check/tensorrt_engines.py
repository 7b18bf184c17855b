"""The tensorrt step: FP16 and INT8 (Q/DQ) engines built from the exports and run, when tensorrt imports."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.artifacts import BATCHES, artifact_throughput, finish
from benchmarks.gpu_check.harness import Check, short
from benchmarks.gpu_check.inputs import reference_inputs
from benchmarks.gpu_check.parity import parity_row


def probe_tensorrt(check: Check) -> tuple[str, str] | None:
    from edge_emotion.toolchain.export.tensorrt_build import require_tensorrt

    try:
        require_tensorrt()
    except Exception as exc:  # noqa: BLE001 - missing, too old, or its libraries absent: all mean no TensorRT here
        return "absent", short(exc)
    if not check.cuda:
        return "skipped", "needs a CUDA device (--device cpu)"
    return None


def int8_onnx(check: Check, state: dict, fp32: Path, ref: dict[str, Any]) -> Path:
    """A Q/DQ INT8 ONNX, its ranges calibrated on the fixture segments (TensorRT 10+ reads precision from the file)."""
    import onnx

    from edge_emotion.toolchain.calibration.int8 import compute_ranges, quantize_qdq
    from edge_emotion.toolchain.export.onnx_export import write_checked
    from edge_emotion.toolchain.export.pipeline import checkpoint_contract

    path = check.work / "model.int8.onnx"
    ranges = compute_ranges(fp32, [(ref["faces"], ref["specs"])], "minmax")
    quantize_qdq(fp32, path, ranges, "minmax")
    write_checked(onnx.load(str(path)), checkpoint_contract(state, "int8"), path)
    return path


def step_tensorrt(check: Check) -> dict[str, Any]:
    from edge_emotion.backends import open_backend
    from edge_emotion.toolchain.checkpoint import load_checkpoint
    from edge_emotion.toolchain.export.pipeline import build_onnx
    from edge_emotion.toolchain.export.tensorrt_build import ShapeProfile, build_engine

    result = check.begin()
    ref = reference_inputs(check)
    state = load_checkpoint(ref["checkpoint"])
    fp32, fp16 = check.work / "trt.fp32.onnx", check.work / "trt.fp16.onnx"
    build_onnx(state, fp32, "fp32")
    build_onnx(state, fp16, "fp16")
    sources = {"fp16": fp16, "int8": int8_onnx(check, state, fp32, ref)}
    result["rows"], problems = [], []
    for precision, onnx_path in sources.items():
        engine = check.work / f"model.{precision}.engine"
        start = time.perf_counter()
        build_engine(onnx_path, engine, ShapeProfile(*BATCHES))  # the profile covers every batch size timed
        row: dict[str, Any] = {"precision": precision, "build_s": time.perf_counter() - start}
        with open_backend(engine) as backend:
            row["parity"] = parity_row(ref["probs"], backend.infer(ref["faces"], ref["specs"]), precision, f"TensorRT {precision}")
            row["throughput"] = artifact_throughput(check, backend, ref["faces"], ref["specs"])
        result["rows"].append(row)
        if not row["parity"]["passed"]:
            problems.append(f"{precision}: {'; '.join(row['parity']['failures'])}")
    return finish(result, problems)
