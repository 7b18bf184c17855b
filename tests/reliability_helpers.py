"""Helpers for the reliability tests: a process that holds a lock, and worker jobs that misbehave on cue.

A module of its own because spawned workers import the job's module: importing a
test module would pull in conftest (torch) in every worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_emotion import LABELS
from edge_emotion.run.pool import FileFn, FileResult
from edge_emotion.toolchain.train.box_cache import CacheJob

_HOLD = """
import sys
from edge_emotion.{module} import {name}
with {call}:
    print("held", flush=True)
    sys.stdin.read()
"""


def hold(target: Path, results: bool = False) -> subprocess.Popen:
    """Another process holding the one-writer lock of `target` until its stdin closes (or it is killed).

    results=True opens it as a real ResultsFile (CSV, the model's labels) instead of the bare lock.
    """
    if results:
        code = _HOLD.format(module="run.results_file", name="ResultsFile", call="ResultsFile(sys.argv[1], sys.argv[2].split(','))")
    else:
        code = _HOLD.format(module="io.atomic", name="exclusive_lock", call="exclusive_lock(sys.argv[1])")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target), ",".join(LABELS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "held", f"the lock holder did not start ({proc.wait()})"
    return proc


def release(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


@dataclass(frozen=True)
class SetupHangsJob:
    """A worker job whose setup never returns (a stuck import or device initialisation)."""

    def setup(self, threads: int) -> FileFn[FileResult]:
        time.sleep(3600)
        raise AssertionError("unreachable")

    def failed(self, index: int, path: Path, cause: str) -> FileResult:
        return FileResult(index, str(path), cause)


@dataclass(frozen=True)
class SetupDiesJob:
    """A worker job whose setup kills its process (a native crash while loading a library)."""

    def setup(self, threads: int) -> FileFn[FileResult]:
        os._exit(7)

    def failed(self, index: int, path: Path, cause: str) -> FileResult:
        return FileResult(index, str(path), cause)


@dataclass(frozen=True)
class ScriptedCacheJob(CacheJob):
    """The real prepare job, except that clips named in `crash` kill their worker and those in `hang` never finish."""

    crash: frozenset[str] = field(default_factory=frozenset)
    hang: frozenset[str] = field(default_factory=frozenset)

    def setup(self, threads: int) -> FileFn[FileResult]:
        cache = super().setup(threads)

        def run(path: Path, index: int) -> FileResult:
            if Path(path).stem in self.crash:
                os._exit(3)
            if Path(path).stem in self.hang:
                time.sleep(3600)
            return cache(path, index)

        return run
