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
from edge_emotion.run.clip_inputs import FaceSetup, InlineLoader
from edge_emotion.run.result import file_key
from edge_emotion.run.rows import build_rows


def stage_breakdown(
    backend: Backend, videos: Sequence[Path], detector: Path | None = None
) -> tuple[StageTimes, tuple[np.ndarray, np.ndarray] | None]:
    """Time decode, faces, spectrogram, inference and consensus per clip (its largest person), one clip at a time
    in this process; `detector`: a folder of detector nets.

    Returns the times and the concatenated segment inputs of the clips that decoded.
    """
    loader = InlineLoader(backend.contract.preprocess, FaceSetup(nets=detector))
    list(loader.run(list(videos[:1])))  # warm-up, untimed: MTCNN's first call pays one-off set-up costs
    totals = dict.fromkeys(STAGES, 0.0)
    faces, specs = [], []
    clips = failed = 0
    media = 0.0
    for clip in loader.run(list(videos)):
        if not clip.people:
            failed += 1
            continue
        person = clip.people[0]
        if not clips:
            backend.infer(model_faces(person.faces, backend.contract.preprocess.face), person.spectrograms)  # warm-up, untimed
        start = time.perf_counter()
        face_input = model_faces(person.faces, backend.contract.preprocess.face)  # [N, 3, S, S]: the crops normalised
        probs = backend.infer(face_input, person.spectrograms)  # [N, K]
        backend.synchronize()
        infer_s = time.perf_counter() - start
        start = time.perf_counter()
        build_rows(clip, probs[None], backend.contract.labels, file_key(clip.path))
        consensus_s = time.perf_counter() - start
        for stage, seconds in {**clip.stage_seconds(), "inference": infer_s, "consensus": consensus_s}.items():
            totals[stage] += seconds
        faces.append(face_input)
        specs.append(person.spectrograms)
        clips += 1
        media += clip.duration or 0.0
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
