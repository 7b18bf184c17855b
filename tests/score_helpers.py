"""A stand-in worker job for WorkerPool tests: no torch and no MTCNN, so a worker starts in well under a second.

It lives in its own small module because spawned workers import the job's module:
importing a test module would pull in conftest (torch) in every worker.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from edge_emotion.run.clip_inputs import ClipInputs
from edge_emotion.run.pool import FileFn


@dataclass(frozen=True)
class ScriptedJob:
    """Files named hang* never finish, crash* kill their worker (exit code 3), others return a fixed error text."""

    def setup(self, threads: int) -> FileFn[ClipInputs]:
        return _run

    def failed(self, index: int, path: Path, cause: str) -> ClipInputs:
        return ClipInputs(index, str(path), error=cause)


def _run(path: Path, index: int) -> ClipInputs:
    name = Path(path).name
    if name.startswith("hang"):
        time.sleep(3600)
    if name.startswith("crash"):
        os._exit(3)
    return ClipInputs(index, str(path), error=f"scripted {name}")


@dataclass(frozen=True)
class BlasThreadsJob:
    """Reports, as each file's error text, how many threads numpy's BLAS runs in the worker (threadpoolctl)."""

    def setup(self, threads: int) -> FileFn[ClipInputs]:
        return _blas_threads

    def failed(self, index: int, path: Path, cause: str) -> ClipInputs:
        return ClipInputs(index, str(path), error=cause)


def _blas_threads(path: Path, index: int) -> ClipInputs:
    from threadpoolctl import threadpool_info

    counts = sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
    return ClipInputs(index, str(path), error=f"blas threads {counts}")
