"""The preprocessing stage of both Ray pipelines: a worker job run on each file, in one WorkerPool process per actor.

`score --executor ray` (ray/scoring.py) runs scoring's ReadJob with it, `prepare --executor ray`
(toolchain/ray_prepare.py) the training cache's CacheJob: one stage, so both keep the local per-file
timeout and crash isolation of run/pool.py.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from edge_emotion.run.pool import JobResult, WorkerJob, WorkerPool

BLOCKS_PER_ACTOR = 16  # input blocks per preprocessing actor: enough for even load, few enough to stay cheap


class PoolStage:
    """Ray Data callable class: run a worker job on a batch of files in this actor's one worker process.

    The job is scoring's ReadJob on tasks that carry their file's place (a `task` column), or the training cache's
    CacheJob on paths (a `path` column, numbered here by the batch's `index`).
    The WorkerPool process runs the job's setup (the FaceDetector) once and outlives the calls;
    a file that hangs past the timeout, or kills the process, gets the job's error result and
    a fresh process takes the next file, exactly as in local `score` and `prepare`.
    """

    def __init__(self, job: WorkerJob[JobResult], timeout: float) -> None:
        self.pool = WorkerPool(job, workers=1, timeout=timeout, threads=1)  # one CPU per actor

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "task" in batch:
            out = list(self.pool.run([pickle.loads(t) for t in batch["task"]]))
        else:
            indices = [int(i) for i in batch["index"]]
            out = list(self.pool.run([Path(str(p)) for p in batch["path"]]))
            for result in out:
                result.index = indices[result.index]  # the pool numbers this batch's files; the driver, the folder's
        return {
            "index": np.array([r.index for r in out], dtype=np.int64),
            "result": np.array([pickle.dumps(r, protocol=5) for r in out], dtype=object),
        }
