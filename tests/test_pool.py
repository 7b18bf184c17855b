"""run/pool.py: a worker never deadlocks with its parent over full pipes in both directions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from score_helpers import BulkyJob
from edge_emotion.run.pool import WorkerPool
tasks = [bytes(1 << 20) for _ in range(8)]  # 1 MiB each: 16x a pipe's buffer
with WorkerPool(BulkyJob(), workers=1, timeout=60) as pool:
    results = list(pool.run(tasks))
print(len(results), sum(len(r) for r in results))
"""


def test_tasks_and_results_larger_than_a_pipe_flow_both_ways():
    """The parent sends the next task while the worker is still sending the previous task's many results: before
    the worker took tasks in on a thread of its own, each side waited for the other to read (a 10-minute recording
    hung this way: its chunk tasks carry the frame times)."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(Path(__file__).parent)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(8 * 12), str(8 * 12 * (1 << 20))]
