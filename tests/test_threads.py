"""run/threads.py: workers follow the cores this process may use, ONNX Runtime threads share them out, one BLAS thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from threadpoolctl import threadpool_info

from edge_emotion.run.pool import WorkerPool
from edge_emotion.run.score import ScoreOptions
from edge_emotion.run.threads import backend_threads, one_blas_thread, usable_cores, worker_threads


def test_default_workers_equal_the_affinity_count():
    assert usable_cores() == len(os.sched_getaffinity(0))
    assert ScoreOptions().workers == len(os.sched_getaffinity(0))


def test_default_workers_follow_a_narrower_affinity_not_the_cpu_count():
    """A process allowed one core (taskset, a container's cpuset) gets one worker, whatever os.cpu_count() says."""
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
        "from edge_emotion.run.score import ScoreOptions; from edge_emotion.toolchain.train.prepare import default_workers;"
        "print(os.cpu_count(), ScoreOptions().workers, default_workers())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    cpus, score_workers, prepare_workers = map(int, done.stdout.split())
    assert (score_workers, prepare_workers) == (1, 1)
    if cpus == 1:
        pytest.skip("a one-CPU machine cannot tell the affinity from the CPU count")


@pytest.mark.parametrize(
    ("cores", "workers", "per_worker", "parent"),
    [(2, 2, 1, 1), (2, 1, 2, 1), (8, 8, 1, 1), (8, 2, 4, 1), (8, 3, 2, 2), (8, 6, 1, 2), (4, 0, 4, 4), (2, 5, 1, 1)],
)
def test_onnx_runtime_threads_share_the_cores_out(cores, workers, per_worker, parent):
    assert worker_threads(workers, cores) == per_worker
    assert backend_threads(workers, cores) == parent
    if workers:  # the workers and the parent never ask for more than the cores plus one thread (or one each)
        assert workers * per_worker + parent <= max(cores, workers) + 1


def _blas_threads() -> list[int]:
    return sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})


def test_one_blas_thread_in_each_worker_and_in_the_scoring_loop():
    from score_helpers import BlasThreadsJob

    default = _blas_threads()
    if not default or max(default) == 1:
        pytest.skip(f"numpy's BLAS runs {default or 'no'} threads by default here: nothing to limit")
    with WorkerPool(BlasThreadsJob(), workers=2, timeout=30.0) as pool:
        reported = {r.error for r in pool.run([Path("a.mp4"), Path("b.mp4"), Path("c.mp4")])}
    assert reported == {"blas threads [1]"}
    with one_blas_thread():
        assert _blas_threads() == [1]
    assert _blas_threads() == default  # the parent's own count afterwards


def test_score_cli_defaults_its_workers_to_the_affinity_count(fresh_checkpoint, hap_clip_path, tmp_path, monkeypatch):
    import typer

    import edge_emotion.run.score as score
    from edge_emotion.cli import app
    from edge_emotion.cli.boundary import run
    from edge_emotion.run.summary import Summary

    seen: list[ScoreOptions] = []
    monkeypatch.setattr(score, "score_folder", lambda root, model, out, options, progress: seen.append(options) or Summary())
    args = ["score", str(hap_clip_path), "-m", str(fresh_checkpoint), "-o", str(tmp_path / "r.csv"), "-q"]
    assert run(typer.main.get_command(app), args) == 0
    assert [o.workers for o in seen] == [len(os.sched_getaffinity(0))]
