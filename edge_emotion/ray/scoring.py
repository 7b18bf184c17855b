"""`score --executor ray`: the local scorer's own stages as a Ray Data pipeline; the driver alone writes the results.

    driver: plan_folder, skip the rows already in the results file (ResultsFile, as local score does)
      --file list--> Ray Data (a few files per block)
      --map_batches(PoolStage with InputsJob), CPU actors: each keeps a WorkerPool of one process that
        builds the FaceDetector once and runs load_clip_inputs per file (decode, plan, faces, spectrograms):
        the local path's code, with its per-file timeout and its crash isolation
      --the compact model inputs (per person: faces [N, 224, 224, 3] uint8 crops, spectrograms
        [N, 1, 192, 120] float32; never decoded frames) through the object store-->
      --map_batches(BackendStage): one actor per GPU (num_gpus=1), else one on a CPU; score_clips over
        the clips of a batch, segments of many clips per backend call
      --scored clips, their inputs dropped--> driver: build_rows, rows in scan order, ResultsFile

Because the driver writes every row itself, in scan order, through the same
ResultsFile, a killed driver resumes exactly like local `score`, and a results
file can be continued by either executor. Ray Data's output order is not kept;
the driver restores it (`score.in_order`: finished rows wait there, never model
inputs). The artifact travels through the object store, so worker nodes need
only the videos, at the same path as on the driver (a shared file system).
"""

from __future__ import annotations

import dataclasses
import pickle
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion.contract import ModelContract
from edge_emotion.errors import ArtifactError, EdgeEmotionError
from edge_emotion.ray.cluster import RayOptions, Resources, ray_session, task_error
from edge_emotion.ray.pool_stage import BLOCKS_PER_ACTOR, PoolStage
from edge_emotion.run.clip_inputs import InputsJob
from edge_emotion.run.pool import WorkerJob
from edge_emotion.run.result import FileKey
from edge_emotion.run.results_file import ResultsFile
from edge_emotion.run.score import (
    NoProgress,
    ScoredClip,
    ScoreOptions,
    ScoreProgress,
    clip_rows,
    in_order,
    model_identity,
    plan_folder,
)
from edge_emotion.run.summary import Summary


@dataclass(frozen=True)
class ActorPlan:
    """How many actors of each stage, and what each holds."""

    preprocess: int  # preprocessing actors: each computes clip inputs in its one worker process
    backend: int
    backend_gpus: int  # GPUs per backend actor: 1 on a GPU cluster, else 0


def plan_actors(resources: Resources, files: int, options: RayOptions) -> ActorPlan:
    """Backend actors: one per GPU (else one); preprocessing actors: the CPUs left, at most one per file."""
    gpus = 1 if resources.gpus else 0
    backend = options.backend_actors or (resources.gpus if gpus else 1)
    spare = resources.cpus - backend  # every actor holds one CPU
    preprocess = options.preprocess_actors or spare
    if preprocess < 1:
        raise EdgeEmotionError(
            f"the Ray cluster has {resources.cpus} CPU(s): scoring needs one per backend actor ({backend}) "
            "and at least one for preprocessing"
        )
    return ActorPlan(preprocess=max(1, min(preprocess, files)), backend=backend, backend_gpus=gpus)


@dataclass(frozen=True)
class ArtifactFacts:
    """What the driver learns of the model from a backend opened where the backend actors run."""

    contract: ModelContract
    name: str  # the backend's name, as results files record it
    precision: str


@dataclass(frozen=True)
class ArtifactBytes:
    """The artifact's bytes and kind: actors open their own copy, so nodes need not share the model file."""

    data: bytes
    suffix: str
    backend: str | None
    device: str

    def open(self) -> Any:
        """Write the bytes to a temporary file, open the backend on it, delete the file (backends read it at once)."""
        from edge_emotion.backends import open_backend

        with tempfile.TemporaryDirectory(prefix="edge-emotion-model-") as tmp:
            path = Path(tmp) / f"model{self.suffix}"
            path.write_bytes(self.data)
            return open_backend(path, self.backend, self.device)


def describe(artifact: ArtifactBytes) -> ArtifactFacts:
    """Run where a backend actor would (its GPU, its TensorRT): the driver needs neither."""
    with artifact.open() as backend:
        return ArtifactFacts(backend.contract, backend.name, backend.precision)


class BackendStage:
    """Ray Data callable class: one backend per actor, opened once; a batch's clips through `score_clips`."""

    def __init__(self, artifact: ArtifactBytes, batch_size: int) -> None:
        self.backend = artifact.open()
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from edge_emotion.run.score import score_clips

        clips = [pickle.loads(b) for b in batch["result"]]
        scored = [_without_inputs(s) for s in score_clips(clips, self.backend, self.batch_size)]
        return {
            "index": np.array([s.clip.index for s in scored], dtype=np.int64),
            "scored": np.array([pickle.dumps(s, protocol=5) for s in scored], dtype=object),
        }


def _without_inputs(scored: ScoredClip) -> ScoredClip:
    """Drop the model inputs (megabytes per clip) before the clip goes back to the driver; rows never read them."""
    empty = [dataclasses.replace(p, faces=p.faces[:0], spectrograms=p.spectrograms[:0]) for p in scored.clip.people]
    return dataclasses.replace(scored, clip=dataclasses.replace(scored.clip, people=empty))


def clips_per_call(batch_size: int, n_segments: int) -> int:
    """Clips per backend actor call: as many as fit in `batch_size` segments (at least one)."""
    return max(1, batch_size // n_segments)


def run_pipeline(
    keys: Sequence[FileKey], artifact: ArtifactBytes, facts: ArtifactFacts, options: ScoreOptions, plan: ActorPlan,
    job: WorkerJob | None = None,
) -> Iterator[ScoredClip]:
    """Stream scored clips (index = position in `keys`) out of the two actor pools, in completion order."""
    import ray.data

    job = job or InputsJob(facts.contract.preprocess, options.face_setup)
    items = [{"index": i, "path": k.path} for i, k in enumerate(keys)]
    data: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=min(len(items), BLOCKS_PER_ACTOR * plan.preprocess))
    data = data.map_batches(
        PoolStage,
        batch_size=None,  # a whole block per call: its files queue in the actor's worker process
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.preprocess, initial_size=plan.preprocess),
        fn_constructor_kwargs={"job": job, "timeout": options.timeout},
        num_cpus=1,
        batch_format="numpy",
    )
    data = data.map_batches(
        BackendStage,
        batch_size=clips_per_call(options.batch_size, facts.contract.n_segments),
        compute=ray.data.ActorPoolStrategy(size=plan.backend),
        fn_constructor_kwargs={"artifact": artifact, "batch_size": options.batch_size},
        num_cpus=1,
        num_gpus=plan.backend_gpus,
        batch_format="numpy",
    )
    for row in data.iter_rows():
        yield pickle.loads(row["scored"])


def score_folder_ray(
    root: str | Path,
    artifact: str | Path,
    output: str | Path,
    options: ScoreOptions = ScoreOptions(),
    progress: ScoreProgress | None = None,
    ray_options: RayOptions = RayOptions(),
) -> Summary:
    """`score_folder` on Ray (its arguments, then where to run): the same rows in the same file, resumable by either executor."""
    progress = progress or NoProgress()
    started = time.perf_counter()
    keys = plan_folder(root, options)
    model = read_artifact(artifact, options)
    with ray_session(ray_options.address, ray_options.num_cpus) as resources:
        facts = _remote(describe, model, resources)
        labels = facts.contract.labels
        with ResultsFile(output, labels, model_identity(artifact, facts), options.faces) as results:
            todo = results.pending(keys)
            summary = Summary(skipped=len(keys) - len(todo))
            progress.start(len(todo), summary.skipped)
            if todo:
                plan = plan_actors(resources, len(todo), ray_options)
                scored = run_pipeline(todo, model, facts, options, plan)
                for rows in in_order(clip_rows(_unwrapped(scored), todo, labels, summary)):
                    results.write_rows(rows)
                    progress.advance(rows[0])  # per file: its rows are one error row or one per person
            summary.rows, summary.labels, summary.statuses, summary.failures = results.counts()
    summary.seconds = time.perf_counter() - started
    return summary


def read_artifact(artifact: str | Path, options: ScoreOptions) -> ArtifactBytes:
    """The model's bytes for the actors; a missing file or an unknown kind is refused before a cluster starts."""
    from edge_emotion.backends import backend_for

    path = Path(artifact)
    try:
        data = path.read_bytes()
        if options.backend is None:
            backend_for(path)
    except OSError as exc:
        raise ArtifactError(path, f"cannot read the model ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise ArtifactError(path, str(exc).split(": ", 1)[-1]) from exc
    return ArtifactBytes(data, path.suffix.lower(), options.backend, options.device)


def _remote(fn: Any, artifact: ArtifactBytes, resources: Resources) -> Any:
    """Run fn(artifact) as a Ray task with a backend actor's resources; its own error comes back as itself."""
    import ray

    task = ray.remote(fn).options(num_cpus=1, num_gpus=1 if resources.gpus else 0, max_retries=0)
    try:
        return ray.get(task.remote(artifact))
    except ray.exceptions.RayTaskError as exc:
        raise task_error(exc) from None


def _unwrapped(scored: Iterator[ScoredClip]) -> Iterator[ScoredClip]:
    """Ray's wrapped errors from inside the pipeline as the package's own error (one line in the CLI)."""
    import ray

    try:
        yield from scored
    except ray.exceptions.RayError as exc:
        raise task_error(exc) from None
