"""How scoring spreads over the machine: how many workers, and how many threads each process runs.

The rule, with C the cores this process may use (its CPU affinity, not the machine's count: a
container or `taskset` gives fewer) and W the preprocessing workers:

- W = C by default: decoding and the face tracker are most of a clip's CPU and run one clip per
  process, so one worker per core keeps every core busy (2 on a 2-core CI box, 8 on an 8-core device).
- Each worker's ONNX Runtime sessions (the face detector) get max(1, C // W) threads: W workers fill
  the C cores and no more.
- The parent's backend (ONNX Runtime on the CPU) gets the cores the workers leave, C - W x (C // W), at
  least one: one thread at the default W = C (the branch, ~2 ms per segment, is a fraction of a clip's
  decoding and faces), so the parent and the workers together never ask for more than C + 1 threads.
  With W = 0 loading and inference take turns in one process and each may use all C.
- numpy's BLAS runs one thread in every process of the scoring path: its threads spin after the
  spectrogram's matrix product and took a third of the CPU for nothing (286 -> 182 CPU ms per clip at
  the same wall time; `score --workers 2` went from 15.3x to 19.3x real time on 2 cores).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy  # noqa: F401 - loads the BLAS library that threadpoolctl limits
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no stubs


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS has one, else the CPU count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def worker_threads(workers: int, cores: int | None = None) -> int:
    """ONNX Runtime threads per preprocessing worker: the cores shared out, at least one."""
    return max(1, (cores or usable_cores()) // max(1, workers))


def backend_threads(workers: int, cores: int | None = None) -> int:
    """ONNX Runtime threads of the parent's backend: the cores the workers leave, at least one; all with W = 0."""
    cores = cores or usable_cores()
    return cores if workers == 0 else max(1, cores - workers * worker_threads(workers, cores))


def limit_blas_threads() -> None:
    """One BLAS thread for the rest of this process (a worker: the cores are shared out by process, not thread)."""
    threadpool_limits(limits=1, user_api="blas")


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """One BLAS thread while the block runs (the parent's scoring loop), the library's own count afterwards."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
