"""A stand-in worker job for WorkerPool tests: no torch and no MTCNN, so a worker starts in well under a second.

It lives in its own small module because spawned workers import the job's module:
importing a test module would pull in conftest (torch) in every worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_emotion.run.pieces import Piece
from edge_emotion.run.pool import FileFn


def _piece(task: Any, index: int, error: str) -> Piece:
    """An error piece of a task: a path (numbered by the pool), or a RecordingTask (its file's own place: Ray's)."""
    return Piece(getattr(task, "file", index), str(getattr(task, "path", task)), error=error)


@dataclass(frozen=True)
class ScriptedJob:
    """Files named hang* never finish, crash* kill their worker (exit code 3), others return a fixed error text."""

    def setup(self, threads: int) -> FileFn[Piece]:
        return _run

    def failed(self, index: int, path: Path, cause: str) -> Piece:
        return _piece(path, index, cause)


def _run(path: Path, index: int) -> Piece:
    """`path`: a path, or a task carrying its file's place (`file`) as the Ray stage gives it."""
    name = Path(str(getattr(path, "path", path))).name
    index = getattr(path, "file", index)
    if name.startswith("hang"):
        time.sleep(3600)
    if name.startswith("crash"):
        os._exit(3)
    return _piece(path, index, f"scripted {name}")


@dataclass(frozen=True)
class BlasThreadsJob:
    """Reports, as each file's error text, how many threads numpy's BLAS runs in the worker (threadpoolctl)."""

    def setup(self, threads: int) -> FileFn[Piece]:
        return _blas_threads

    def failed(self, index: int, path: Path, cause: str) -> Piece:
        return _piece(path, index, cause)


def _blas_threads(path: Path, index: int) -> Piece:
    from threadpoolctl import threadpool_info

    counts = sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
    return _piece(path, index, f"blas threads {counts}")


@dataclass(frozen=True)
class BulkyJob:
    """Tasks larger than a pipe's buffer, each answered by many results larger than it (a long recording's chunk
    carries its frame times in; its pieces go out)."""

    parts: int = 12

    def setup(self, threads: int) -> FileFn[bytes]:
        return self._run

    def _run(self, task: bytes, index: int) -> Iterator[bytes]:
        return iter([bytes([index % 256]) * len(task)] * self.parts)

    def failed(self, index: int, path: object, cause: str) -> bytes:
        return cause.encode()
