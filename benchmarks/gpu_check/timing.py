"""Timed calls as the report stores them: edge_emotion's bench timing (synchronised calls, percentiles) as a dict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from edge_emotion.run.bench.timing import time_synchronised


def timed(call: Callable[[], object], sync: Callable[[], None], min_seconds: float, warmup: int = 3,
          min_calls: int = 5, max_calls: int = 300) -> dict[str, float]:  # fmt: skip
    """Warm up, then time synchronised calls for at least `min_seconds` and `min_calls` (at most `max_calls`).

    Milliseconds per call: mean, p50, p90, p95, p99, min, max, and the number of calls (`iterations`)."""
    return asdict(time_synchronised(call, sync, warmup, min_calls, max_calls, min_seconds))
