"""`prepare --executor ray`: the training cache's own CacheJob on Ray Data actors, one WorkerPool process per actor.

    driver (train.prepare.prepare_corpus: the cache's lock, cache.json, the index, errors.jsonl, the report)
      --clips still to cache--> Ray Data (a few clips per block)
      --map_batches(PoolStage with CacheJob), CPU actors: detector built once per actor's worker
        process, then decode + MTCNN every k-th frame + interpolated boxes, the clip's .npz written
        atomically by `write_cached`, exactly as a local worker writes it
      --(clip, error or None), a few bytes per clip--> driver

The cache folder, like the videos, must be at the same path on every node (a
shared file system): the actors write the cache files where the driver reads
them, so the cache is the local one, file for file.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence

from edge_emotion.ray.cluster import RayOptions, ray_session, task_error
from edge_emotion.ray.pool_stage import BLOCKS_PER_ACTOR, PoolStage
from edge_emotion.toolchain.train.box_cache import CacheJob
from edge_emotion.toolchain.train.crema import ClipItem


def run_jobs_on_ray(
    todo: Sequence[ClipItem], job: CacheJob, timeout: float, options: RayOptions = RayOptions()
) -> Iterator[tuple[ClipItem, str | None]]:
    """(clip, error or None) for every clip of `todo`, in completion order: `train.prepare.run_jobs` on a cluster.

    Every CPU of the cluster runs one preprocessing actor (or `options.preprocess_actors`), at most one per clip.
    """
    if not todo:
        return
    with ray_session(options.address, options.num_cpus) as resources:
        import ray
        import ray.data

        actors = max(1, min(options.preprocess_actors or resources.cpus, len(todo)))
        items = [{"index": i, "path": item.path} for i, item in enumerate(todo)]
        data: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=min(len(items), BLOCKS_PER_ACTOR * actors))
        data = data.map_batches(
            PoolStage,
            batch_size=None,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors, initial_size=actors),
            fn_constructor_kwargs={"job": job, "timeout": timeout},
            num_cpus=1,
            batch_format="numpy",
        )
        try:
            for row in data.iter_rows():
                result = pickle.loads(row["result"])
                yield todo[result.index], result.error
        except ray.exceptions.RayError as exc:
            raise task_error(exc) from None
