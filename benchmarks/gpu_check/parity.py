"""The parity step: the torch backend on the device against the torch backend on the CPU, on real fixture segments
(FP32 with the default TF32, FP32 without TF32, FP16 autocast); and the parity row the exported artifacts reuse."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.gpu_check.harness import Check, StepOutcome
from benchmarks.gpu_check.inputs import reference_inputs
from benchmarks.gpu_check.report import table
from benchmarks.gpu_check.torch_switches import tf32


def parity_row(reference: np.ndarray, candidate: np.ndarray, precision: str, label: str) -> dict[str, Any]:
    """export.parity.compare with the precision's default tolerance, as a JSON-able row."""
    from edge_emotion.toolchain.export.parity import compare

    report = compare(reference, candidate, precision)
    return {"candidate": label, "precision": precision, "segments": report.segments,
            "max_abs_diff": report.max_abs_diff, "mean_abs_diff": report.mean_abs_diff,
            "top1_agreement": report.top1_agreement, "tolerance_max_abs": report.tolerance.max_abs,
            "passed": report.passed, "failures": report.failures}  # fmt: skip


def parity_failures(rows: list[dict[str, Any]]) -> list[str]:
    """'candidate: what failed' for every row outside its tolerance."""
    return [f"{r['candidate']}: {'; '.join(r['failures'])}" for r in rows if not r["passed"]]


def step_parity(check: Check) -> dict[str, Any]:
    from edge_emotion.backends import open_backend

    result = check.begin()
    ref = reference_inputs(check)
    result.update(weights=ref["weights"], inputs=ref["how"], segments=len(ref["probs"]),
                  reference="torch backend, CPU, FP32")  # fmt: skip
    candidates: list[tuple[str, bool | None, str]] = [("fp32", None, f"torch {check.device} FP32")]
    if check.cuda:
        candidates = [("fp32", None, "torch cuda FP32 (TF32 as the defaults set it)"),
                      ("fp32", False, "torch cuda FP32, TF32 off"), ("fp16", None, "torch cuda FP16 autocast")]  # fmt: skip
    else:
        result["note"] = "--device cpu: the candidate is the CPU too, so this checks the code path, not a GPU"
    result["rows"] = []
    for precision, allow_tf32, label in candidates:
        with tf32(allow_tf32), open_backend(ref["checkpoint"], "torch", device=check.device, precision=precision) as b:
            probs = b.infer(ref["faces"], ref["specs"])
        result["rows"].append(parity_row(ref["probs"], probs, precision, label))
    result["summary"] = "; ".join(f"{r['candidate']}: max |diff| {r['max_abs_diff']:.2g}" for r in result["rows"])
    failed = parity_failures(result["rows"])
    if failed:
        raise StepOutcome("failed", "; ".join(failed), result)
    return result


def md_parity(r: dict[str, Any]) -> list[str]:
    lines = [f"Reference: {r.get('reference')}; {r.get('segments')} segments ({r.get('inputs')}); {r.get('weights')}.", ""]
    rows = [[x["candidate"], x["max_abs_diff"], x["mean_abs_diff"], x["top1_agreement"], x["tolerance_max_abs"],
             x["passed"]] for x in r.get("rows", [])]  # fmt: skip
    return lines + table(["candidate", "max abs diff", "mean abs diff", "top-1 agreement", "tolerance", "passed"], rows)
