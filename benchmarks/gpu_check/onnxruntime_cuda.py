"""The onnxruntime_cuda step: FP32 and FP16 ONNX exports on ONNX Runtime's CUDA provider, when onnxruntime-gpu is there."""

from __future__ import annotations

from typing import Any

from benchmarks.gpu_check.artifacts import artifact_throughput, finish
from benchmarks.gpu_check.harness import Check, short
from benchmarks.gpu_check.inputs import reference_inputs
from benchmarks.gpu_check.parity import parity_row


def probe_ort_cuda(check: Check) -> tuple[str, str] | None:
    try:
        import onnxruntime
    except ImportError as exc:
        return "absent", f"onnxruntime is not importable ({short(exc)})"
    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return "absent", (f"onnxruntime {onnxruntime.__version__} offers {providers}: no CUDAExecutionProvider "
                          "(onnxruntime-gpu is not installed)")  # fmt: skip
    if not check.cuda:
        return "skipped", "needs a CUDA device (--device cpu)"
    return None


def step_onnxruntime_cuda(check: Check) -> dict[str, Any]:
    from edge_emotion.backends import open_backend
    from edge_emotion.toolchain.checkpoint import load_checkpoint
    from edge_emotion.toolchain.export.pipeline import build_onnx

    result = check.begin()
    ref = reference_inputs(check)
    state = load_checkpoint(ref["checkpoint"])
    result["rows"], problems = [], []
    for precision in ("fp32", "fp16"):
        path = check.work / f"model.{precision}.onnx"
        build_onnx(state, path, precision)
        with open_backend(path, "onnxruntime", device="cuda", provider="cuda") as backend:
            row = {"precision": precision, "providers": backend.providers}
            row["parity"] = parity_row(ref["probs"], backend.infer(ref["faces"], ref["specs"]), precision, f"ORT CUDA {precision}")
            row["throughput"] = artifact_throughput(check, backend, ref["faces"], ref["specs"])
        result["rows"].append(row)
        if row["providers"][0] != "CUDAExecutionProvider":
            problems.append(f"{precision}: the CUDA provider did not start (running on {row['providers'][0]})")
        if not row["parity"]["passed"]:
            problems.append(f"{precision}: {'; '.join(row['parity']['failures'])}")
    return finish(result, problems)
