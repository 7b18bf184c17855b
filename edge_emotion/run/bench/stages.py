"""Where the time of a clip goes: decode, faces, spectrogram, inference and consensus, per clip, on real videos."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_emotion.backends import open_backend
from edge_emotion.backends.base import Backend
from edge_emotion.errors import EdgeEmotionError
from edge_emotion.preprocess.segments import model_faces
from edge_emotion.run.bench.report import STAGES, StageTimes
from edge_emotion.run.bench.targets import Target, availability
from edge_emotion.run.pieces import FaceSetup, ScoredPiece
from edge_emotion.run.read import InlineReader, ReadJob
from edge_emotion.run.result import file_key
from edge_emotion.run.rows import assemble, file_rows
from edge_emotion.timeline.chunks import RecordingTask


def stage_breakdown(
    backend: Backend, videos: Sequence[Path], detector: Path | None = None
) -> tuple[StageTimes, tuple[np.ndarray, np.ndarray] | None]:
    """Time decode, faces, spectrogram, inference and consensus per clip (its largest person), one clip at a time
    in this process; `detector`: a folder of detector nets.

    Returns the times and the concatenated segment inputs of the clips that decoded.
    """
    job = ReadJob(backend.contract.preprocess, FaceSetup(nets=detector))
    reader = InlineReader(job)
    list(reader.run([RecordingTask(0, videos[0])] if videos else []))  # warm-up, untimed: MTCNN's first call pays set-up
    totals = dict.fromkeys(STAGES, 0.0)
    faces, specs = [], []
    clips = failed = 0
    media = 0.0
    for piece in reader.run([RecordingTask(i, v) for i, v in enumerate(videos)]):
        if piece.chunk is None or piece.facts is None:
            failed += 1
            continue
        person = piece.people[0]
        spectrograms = piece.spectrograms[person.rows]  # [N, 1, F, T]
        if not clips:
            backend.infer(model_faces(person.faces, backend.contract.preprocess.face), spectrograms)  # warm-up, untimed
        start = time.perf_counter()
        face_input = model_faces(person.faces, backend.contract.preprocess.face)  # [N, 3, S, S]: the crops normalised
        probs = backend.infer(face_input, spectrograms)  # [N, K]
        backend.synchronize()
        infer_s = time.perf_counter() - start
        start = time.perf_counter()
        (file,) = assemble([ScoredPiece(piece, [probs])], job.plan, {})
        list(file_rows(file_key(piece.path), file, backend.contract.labels, "largest", "clip"))
        consensus_s = time.perf_counter() - start
        for stage, seconds in {**piece.stage_seconds(), "inference": infer_s, "consensus": consensus_s}.items():
            totals[stage] += seconds
        faces.append(face_input)
        specs.append(spectrograms)
        clips += 1
        media += piece.facts.times.duration
    per_clip = {k: v * 1e3 / clips for k, v in totals.items()} if clips else {}
    inputs = (np.concatenate(faces), np.concatenate(specs)) if faces else None
    return StageTimes(clips, failed, media, per_clip), inputs


def video_inputs(
    targets: Sequence[Target], videos: Sequence[Path], device: str, detector: Path | None = None
) -> tuple[StageTimes | None, tuple[np.ndarray, np.ndarray] | None]:
    """Stage breakdown with the first target that opens; its clips' segments become the agreement inputs."""
    for target in targets:
        if target.artifact is None or availability(target.backend):
            continue
        try:
            backend = open_backend(target.artifact, target.backend, device)
        except (EdgeEmotionError, ValueError, RuntimeError, OSError, ImportError):
            continue
        with backend:
            return stage_breakdown(backend, videos, detector)
    return None, None
