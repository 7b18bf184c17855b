"""What the exported-artifact steps (onnxruntime_cuda, tensorrt) share: throughput of a Backend, the verdict, the table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.gpu_check.harness import Check, StepOutcome
from benchmarks.gpu_check.report import table
from benchmarks.gpu_check.timing import timed

BATCHES = (1, 64, 1024)


def artifact_throughput(check: Check, backend: Any, faces: np.ndarray, specs: np.ndarray,
                        batches: Sequence[int] = BATCHES) -> list[dict[str, Any]]:  # fmt: skip
    """segments/s of a Backend (numpy in/out) at each batch size, the fixture segments repeated to fill it."""
    rows = []
    for batch in batches:
        if check.step_left() < 3:
            rows.append({"batch": batch, "status": "skipped", "reason": "step time used"})
            continue
        reps = -(-batch // len(faces))
        f, a = np.concatenate([faces] * reps)[:batch], np.concatenate([specs] * reps)[:batch]
        stats = timed(lambda f=f, a=a: backend.infer(f, a), backend.synchronize, check.sizes.cell_s)
        rows.append({"batch": batch, "status": "ok", "latency_ms": stats, "segments_per_s": batch / (stats["p50"] / 1e3)})
    return rows


def finish(result: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The summary line of the artifact rows; the step fails naming every problem."""
    result["summary"] = "; ".join(f"{r['precision']}: max |diff| {r['parity']['max_abs_diff']:.2g}" for r in result["rows"])
    if problems:
        raise StepOutcome("failed", "; ".join(problems), result)
    return result


def md_artifacts(r: dict[str, Any]) -> list[str]:
    rows = []
    for x in r.get("rows", []):
        speeds = ", ".join(f"{t['batch']}: {t['segments_per_s']:.0f}" for t in x.get("throughput", []) if t["status"] == "ok")
        rows.append([x["precision"], x["parity"]["max_abs_diff"], x["parity"]["passed"], speeds])
    return table(["precision", "max abs diff vs torch CPU", "passed", "segments/s by batch"], rows)
