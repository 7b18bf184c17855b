"""run_bench: every requested backend x artifact x batch size timed on the same inputs, with its agreement.

Every requested backend gets a row: one that cannot run says why (not installed, no artifact of its kind given,
failed to open) instead of disappearing from the table. With videos, their segments are the inputs and the report
adds the per-stage breakdown (stages.py); otherwise seeded random inputs (agreement.random_inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_emotion.backends import open_backend
from edge_emotion.backends.base import Backend
from edge_emotion.errors import EdgeEmotionError
from edge_emotion.run.bench.agreement import add_agreement, random_inputs
from edge_emotion.run.bench.machine import machine_info
from edge_emotion.run.bench.report import BenchReport, BenchRow
from edge_emotion.run.bench.stages import video_inputs
from edge_emotion.run.bench.targets import Target, availability
from edge_emotion.run.bench.timing import time_calls


def _take(array: np.ndarray, count: int) -> np.ndarray:
    """The first `count` items, repeating the array when it holds fewer."""
    reps = -(-count // array.shape[0])
    return np.ascontiguousarray(np.concatenate([array] * reps)[:count]) if reps > 1 else np.ascontiguousarray(array[:count])


def _infer_all(backend: Backend, faces: np.ndarray, specs: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([backend.infer(faces[i : i + batch], specs[i : i + batch]) for i in range(0, len(faces), batch)])


def bench_target(
    target: Target,
    batch_sizes: Sequence[int],
    iterations: int,
    warmup: int,
    device: str,
    inputs: tuple[np.ndarray, np.ndarray] | None,
    max_seconds: float,
) -> tuple[list[BenchRow], np.ndarray | None]:
    """Rows for one target (one per batch size, or one saying why not) and its probabilities on the agreement inputs."""
    artifact = None if target.artifact is None else str(target.artifact)
    missing = availability(target.backend)
    if missing:
        return [BenchRow(target.backend, artifact, "unavailable", missing)], None
    if target.artifact is None:
        return [BenchRow(target.backend, None, "skipped", target.reason)], None
    size_mb = target.artifact.stat().st_size / 2**20 if target.artifact.is_file() else None
    try:
        backend = open_backend(target.artifact, target.backend, device)
    except (EdgeEmotionError, ValueError, RuntimeError, OSError, ImportError) as exc:
        return [BenchRow(target.backend, artifact, "failed", f"{type(exc).__name__}: {exc}", file_mb=size_mb)], None
    with backend:
        faces, specs = inputs if inputs is not None else random_inputs(backend.contract, max(batch_sizes))
        probs = _infer_all(backend, faces, specs, max(batch_sizes))  # [S, K]
        rows = []
        for batch in batch_sizes:
            stats = time_calls(backend, _take(faces, batch), _take(specs, batch), iterations, warmup, max_seconds)
            seg_s = batch / (stats.mean / 1e3)
            rows.append(
                BenchRow(
                    target.backend, artifact, "ok", "", backend.precision, size_mb, batch, stats,
                    seg_s, seg_s / backend.contract.n_segments,
                )
            )
        return rows, probs


def run_bench(
    targets: Sequence[Target],
    batch_sizes: Sequence[int] = (1, 10, 64),
    iterations: int = 50,
    warmup: int = 5,
    device: str = "auto",
    videos: Sequence[Path] = (),
    max_seconds: float = 20.0,
    detector: Path | None = None,
) -> BenchReport:
    """Benchmark every target (see plan_targets); with videos, use their segments as inputs and add the per-stage breakdown
    (faces found with the detector nets in `detector`, default the packaged ONNX)."""
    if not targets:
        raise ValueError("give at least one artifact")
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    stages, inputs = None, None
    if videos:
        stages, inputs = video_inputs(targets, videos, device, detector)
    results = [bench_target(t, batch_sizes, iterations, warmup, device, inputs, max_seconds) for t in targets]
    add_agreement(results)
    rows = [row for target_rows, _ in results for row in target_rows]
    described = f"{len(inputs[0])} segments of {stages.clips} videos" if inputs is not None and stages is not None else "seeded random inputs"
    return BenchReport(rows, stages, machine_info(), described)
