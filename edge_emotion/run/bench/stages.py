"""Where the time of a clip goes: decode, faces, spectrogram, inference and consensus, per clip, on real videos."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_emotion.backends import open_backend
from edge_emotion.backends.base import Backend
from edge_emotion.errors import EdgeEmotionError
from edge_emotion.run.bench.report import STAGES, StageTimes
from edge_emotion.run.bench.targets import Target, availability
from edge_emotion.run.clip_inputs import InlineLoader
from edge_emotion.run.rows import build_row, file_key


def stage_breakdown(backend: Backend, videos: Sequence[Path]) -> tuple[StageTimes, tuple[np.ndarray, np.ndarray] | None]:
    """Time decode, faces, spectrogram, inference and consensus per clip, one clip at a time in this process.

    Returns the times and the concatenated segment inputs of the clips that decoded.
    """
    loader = InlineLoader(backend.contract.preprocess)
    list(loader.run(list(videos[:1])))  # warm-up, untimed: MTCNN's first call pays one-off set-up costs
    totals = dict.fromkeys(STAGES, 0.0)
    faces, specs = [], []
    clips = failed = 0
    media = 0.0
    for clip in loader.run(list(videos)):
        if clip.inputs is None:
            failed += 1
            continue
        if not clips:
            backend.infer(clip.inputs.faces, clip.inputs.spectrograms)  # warm-up, untimed
        start = time.perf_counter()
        probs = backend.infer(clip.inputs.faces, clip.inputs.spectrograms)  # [N, K]
        backend.synchronize()
        infer_s = time.perf_counter() - start
        start = time.perf_counter()
        build_row(clip, probs, backend.contract.labels, file_key(clip.path))
        consensus_s = time.perf_counter() - start
        for stage, seconds in {**clip.stage_seconds(), "inference": infer_s, "consensus": consensus_s}.items():
            totals[stage] += seconds
        faces.append(clip.inputs.faces)
        specs.append(clip.inputs.spectrograms)
        clips += 1
        media += clip.duration or 0.0
    per_clip = {k: v * 1e3 / clips for k, v in totals.items()} if clips else {}
    inputs = (np.concatenate(faces), np.concatenate(specs)) if faces else None
    return StageTimes(clips, failed, media, per_clip), inputs


def video_inputs(targets: Sequence[Target], videos: Sequence[Path], device: str) -> tuple[StageTimes | None, tuple[np.ndarray, np.ndarray] | None]:
    """Stage breakdown with the first target that opens; its clips' segments become the agreement inputs."""
    for target in targets:
        if target.artifact is None or availability(target.backend):
            continue
        try:
            backend = open_backend(target.artifact, target.backend, device)
        except (EdgeEmotionError, ValueError, RuntimeError, OSError, ImportError):
            continue
        with backend:
            return stage_breakdown(backend, videos)
    return None, None
