"""A stand-in job that streams a file's results in parts, for WorkerPool tests (no torch, no MTCNN: workers start fast).

Spawned workers import the job's module, so it lives apart from the test modules (which import torch via conftest).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_emotion.run.recording import RecordingPart


@dataclass(frozen=True)
class PartsJob:
    """parts_K: K parts (the last one marked last); die_K: K parts, then the worker dies (exit code 3);
    slow_K_S: K parts, S seconds apart (each part is progress, so a timeout shorter than K x S never fires)."""

    def setup(self, threads: int) -> Callable[[Path, int], Iterator[RecordingPart]]:
        return _parts

    def failed(self, index: int, path: Path, cause: str) -> RecordingPart:
        return RecordingPart(index, str(path), error=cause)


def _parts(path: Path, index: int) -> Iterator[RecordingPart]:
    kind, count, *rest = Path(path).name.split("_")
    for k in range(int(count)):
        if kind == "slow":
            time.sleep(float(rest[0]))
        yield RecordingPart(index, str(path), first=k, last=kind != "die" and k == int(count) - 1, error=f"part {k}")
    if kind == "die":
        os._exit(3)
