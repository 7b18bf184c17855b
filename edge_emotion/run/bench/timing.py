"""Latency of a backend call: warm-up first, `synchronize()` after every call, many calls, percentiles.

The usual rules (spaCy's benchmark_speed, trtexec): a GPU's queued work is counted because every timed call waits
for it, and percentiles say more than one mean. Imports nothing heavier than numpy and the backend base, so that
benchmarks (gpu_check) time their own calls the same way without the decoder or the detector.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edge_emotion.backends.base import Backend


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per call."""

    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    min: float
    max: float
    iterations: int


def latency_stats(seconds: Sequence[float]) -> LatencyStats:
    """Summarise call times given in seconds; percentiles interpolate linearly (numpy's default)."""
    if not seconds:
        raise ValueError("no timings to summarise")
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    return LatencyStats(float(ms.mean()), float(p50), float(p90), float(p95), float(p99), float(ms.min()), float(ms.max()), len(ms))


def time_synchronised(
    call: Callable[[], object], sync: Callable[[], None], warmup: int, min_calls: int, max_calls: int, max_seconds: float
) -> LatencyStats:
    """`warmup` untimed calls, then timed calls each followed by `sync()`: at least `min_calls`, at most `max_calls`,
    stopping after `min_calls` once `max_seconds` have passed."""
    for _ in range(warmup):
        call()
    sync()
    times: list[float] = []
    budget_end = time.perf_counter() + max_seconds
    while len(times) < max(1, max_calls):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
        if len(times) >= min_calls and time.perf_counter() > budget_end:
            break
    return latency_stats(times)


def time_calls(backend: Backend, faces: np.ndarray, spectrograms: np.ndarray, iterations: int, warmup: int, max_seconds: float) -> LatencyStats:
    """Time `iterations` synchronised backend calls (at least 3, fewer if `max_seconds` runs out) after `warmup` calls."""
    return time_synchronised(lambda: backend.infer(faces, spectrograms), backend.synchronize, warmup, 3, iterations, max_seconds)
