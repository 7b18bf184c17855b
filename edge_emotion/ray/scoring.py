"""`score --executor ray`: the one driver (run/score.py `score_files`) on a Ray Data executor; the driver alone writes.

    driver: plan_folder, skip the rows already in the results file, tasks (a file each)
      --Ray Data (a few tasks per block)--> map_batches(PoolStage with ReadJob), CPU actors: each keeps a
        WorkerPool of one process that builds the FaceDetector once and reads each task's pieces (run/read.py):
        the local path's code, with its per-file timeout and its crash isolation
      --the pieces (per person uint8 face crops, the part's spectrograms once; never decoded frames)
        through the object store--> map_batches(BackendStage): one actor per GPU (num_gpus=1), else one on a
        CPU; score_pieces over the pieces of a batch, segments of many files per backend call
      --scored pieces, their inputs dropped--> driver: assemble, rows in scan order, ResultsFile

Because the driver writes every row itself, in scan order, through the same ResultsFile, a killed driver
resumes exactly like local `score`, and a results file can be continued by either executor. Ray Data's
output order is not kept; the driver restores it (`score.in_file_order`: finished rows wait there, never model
inputs). The artifact travels through the object store, so worker nodes need only the videos, at the same
path as on the driver (a shared file system). Windows (`--window`) are not offered on Ray yet: the driver and
the stages take recording tasks as they are (a task carries its file's place), but a preprocessing actor
returns a whole block's pieces at once, an hour of crops for a long recording.
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion.contract import ModelContract
from edge_emotion.errors import ArtifactError, EdgeEmotionError
from edge_emotion.ray.cluster import RayOptions, Resources, ray_session, task_error
from edge_emotion.ray.pool_stage import BLOCKS_PER_ACTOR, PoolStage
from edge_emotion.run.pieces import ScoredPiece
from edge_emotion.run.pool import WorkerJob
from edge_emotion.run.read import ReadJob
from edge_emotion.run.score import ScoreOptions, ScoreProgress, score_files
from edge_emotion.run.summary import Summary
from edge_emotion.timeline.chunks import RecordingTask


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
    """Ray Data callable class: one backend per actor, opened once; a batch's pieces through `score_pieces`."""

    def __init__(self, artifact: ArtifactBytes, batch_size: int) -> None:
        self.backend = artifact.open()
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from edge_emotion.run.score import score_pieces

        pieces = [pickle.loads(b) for b in batch["result"]]
        scored = [_without_inputs(s) for s in score_pieces(pieces, self.backend, self.batch_size)]
        return {
            "index": np.array([s.piece.index for s in scored], dtype=np.int64),
            "scored": np.array([pickle.dumps(s, protocol=5) for s in scored], dtype=object),
        }


def _without_inputs(scored: ScoredPiece) -> ScoredPiece:
    """Drop the model inputs (megabytes per clip) before the piece goes back to the driver; rows never read them."""
    piece = scored.piece
    people = [dataclasses.replace(c, faces=c.faces[:0]) for c in piece.people]
    return dataclasses.replace(scored, piece=dataclasses.replace(piece, spectrograms=piece.spectrograms[:0], people=people))


def clips_per_call(batch_size: int, n_segments: int) -> int:
    """Pieces per backend actor call: as many clips as fit in `batch_size` segments (at least one)."""
    return max(1, batch_size // n_segments)


def run_pipeline(
    tasks: Sequence[RecordingTask], artifact: ArtifactBytes, facts: ArtifactFacts, options: ScoreOptions, plan: ActorPlan,
    job: WorkerJob | None = None,
) -> Iterator[ScoredPiece]:
    """Stream scored pieces (index: their file's place, as the task says) out of the two actor pools, in completion order."""
    import ray.data

    job = job or ReadJob(facts.contract.preprocess, options.face_setup)
    items = [{"index": i, "task": pickle.dumps(task, protocol=5)} for i, task in enumerate(tasks)]
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


@dataclass
class RayScorer:
    """The Ray executor at work (run/score.py's Scorer): the model's facts, and scored pieces for tasks."""

    artifact: ArtifactBytes
    facts: ArtifactFacts
    resources: Resources
    options: ScoreOptions
    ray_options: RayOptions
    name: str = dataclasses.field(init=False)
    contract: ModelContract = dataclasses.field(init=False)
    precision: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.name, self.contract, self.precision = self.facts.name, self.facts.contract, self.facts.precision

    def score(self, tasks: Iterable[RecordingTask], job: ReadJob) -> Iterator[ScoredPiece]:
        todo = list(tasks)
        plan = plan_actors(self.resources, len(todo), self.ray_options)
        yield from _unwrapped(run_pipeline(todo, self.artifact, self.facts, self.options, plan, job))


@contextmanager
def on_ray(artifact: str | Path, options: ScoreOptions, ray_options: RayOptions = RayOptions()) -> Iterator[RayScorer]:
    """The Ray executor: the model read here (refused before a cluster starts), described where backend actors run."""
    model = read_artifact(artifact, options)
    with ray_session(ray_options.address, ray_options.num_cpus) as resources:
        yield RayScorer(model, _remote(describe, model, resources), resources, options, ray_options)


def score_folder_ray(
    root: str | Path, artifact: str | Path, output: str | Path, options: ScoreOptions = ScoreOptions(),
    progress: ScoreProgress | None = None, ray_options: RayOptions = RayOptions(),
) -> Summary:
    """`score_folder` on Ray (its arguments, then where to run): the same rows in the same file, resumable by either executor."""
    return score_files(root, artifact, output, options, progress, executor=functools.partial(on_ray, ray_options=ray_options))


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


def _unwrapped(scored: Iterator[ScoredPiece]) -> Iterator[ScoredPiece]:
    """Ray's wrapped errors from inside the pipeline as the package's own error (one line in the CLI)."""
    import ray

    try:
        yield from scored
    except ray.exceptions.RayError as exc:
        raise task_error(exc) from None
